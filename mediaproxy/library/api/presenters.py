"""The JSON of every answer of the library's APIs, one function per shape: the services return
records, the dialects render them here. Field names are the APIs' own (camelCase), times ISO 8601
UTC; ``base`` is the request's public base URL (``MEDIAPROXY_PUBLIC_BASE_URL`` or the request's)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

import orjson

from ..models import Admin, Album, Avatar, Job, Media, Organization
from ..services import Library
from ..services.base import iso, public_key

__all__ = ["iso"]


def public_url(lib: Library, base: str, key: str) -> str:
    """The origin's public URL of a stored key of the library's bucket."""
    return f"{lib.settings.public_base_url or base}/library/{key}"


def media_json(lib: Library, media: Media, base: str) -> dict:
    """A media as the /api/v1 API answers it (and the /v2 image service, with more fields)."""
    v = media.current
    obj = v.object if v is not None else None
    public = not media.is_private and media.state == "ready" and obj is not None
    return {
        "id": media.id,
        "filename": media.filename,
        "mimeType": media.mime_type,
        "size": media.size,
        "width": media.width,
        "height": media.height,
        "objectKey": obj.key if obj is not None else None,
        "bucket": lib.bucket,
        "isPrivate": media.is_private,
        "status": "uploading" if media.state == "receiving" else media.state,  # claimed: not there yet
        "alt": media.alt,
        "caption": media.caption,
        "description": media.description,
        "blurHash": media.blur_hash,
        "thumbHash": media.thumb_hash,
        "canonicalUri": (f"{lib.settings.public_base_url or base}/sha256/{obj.sha256}"
                         if public and obj.sha256 else None),
        "url": public_url(lib, base, public_key(media)) if public else None,
        "variants": variants_json(lib, media, base),
        "createdAt": iso(media.created_at),
        "updatedAt": iso(media.updated_at),
    }


def variants_json(lib: Library, media: Media, base: str) -> list[dict]:
    v = media.current
    if v is None:
        return []
    return [
        {"name": x.name, "url": None if media.is_private else public_url(lib, base, x.key),
         "objectKey": x.key, "width": x.width, "height": x.height, "size": x.size, "mimeType": x.mime_type}
        for x in v.variants
    ]


def media_api_json(lib: Library, media: Media, base: str) -> dict:
    """A media as the presigned /media API answers it (``GET /media/{id}``)."""
    obj = media.current.object if media.current is not None else None
    ready = media.state == "ready" and obj is not None
    placed = media.thumb_hash is not None or media.blur_hash is not None  # the job has run
    return {
        "id": media.id,
        "filename": media.filename,
        "contentType": media.mime_type,
        "size": media.size if ready else None,
        "width": media.width,
        "height": media.height,
        "status": "uploaded" if ready else "pending_upload",
        "publicDownloadUrl": public_url(lib, base, public_key(media)) if ready and not media.is_private else None,
        "blurHash": media.blur_hash,
        "thumbHash": media.thumb_hash,
        "canonicalUri": (f"{lib.settings.public_base_url or base}/sha256/{obj.sha256}"
                         if ready and placed and obj.sha256 and not media.is_private else None),
        "createdAt": iso(media.created_at),
    }


def image_json(lib: Library, media: Media, base: str, prefix: str, tags: list[str], albums: list[str]) -> dict:
    """An image of the /v2 image service: the media's fields, its owner, tags, albums and URL."""
    return {**media_json(lib, media, base), "userId": media.owner, "tags": tags, "albumIds": albums,
            "imageUrl": f"{base}{prefix}/images/{media.id}"}


def album_json(album: Album, count: int) -> dict:
    return {"id": album.id, "name": album.name, "description": album.description, "isPublic": album.is_public,
            "albumId": album.external_id, "userId": album.owner, "imageCount": count,
            "createdAt": iso(album.created_at), "updatedAt": iso(album.updated_at)}


def avatar_json(lib: Library, media: Media, base: str, prefix: str, user: str) -> dict:
    return {"externalUserId": user, "id": media.id, "mimeType": media.mime_type, "size": media.size,
            "width": media.width, "height": media.height,
            "url": f"{base}{prefix}/avatars/{quote(user, safe='')}",
            "versionedUrl": public_url(lib, base, media.current.object.key),
            "createdAt": iso(media.created_at), "updatedAt": iso(media.updated_at)}


def avatar_admin_json(row: Avatar, m: Media) -> dict:
    return {"id": row.id, "clientId": row.org_id, "externalUserId": row.external_user_id, "mediaId": m.id,
            "mimeType": m.mime_type, "size": m.size, "width": m.width, "height": m.height,
            "createdAt": iso(row.created_at), "updatedAt": iso(row.updated_at)}


def admin_json(a: Admin) -> dict:
    return {"id": a.id, "email": a.email, "name": a.name, "createdAt": iso(a.created_at),
            "updatedAt": iso(a.updated_at)}


def client_json(org: Organization, stats: dict | None = None) -> dict:
    out = {"id": org.id, "slug": org.slug, "name": org.name, "createdAt": iso(org.created_at)}
    if stats is not None:
        out["stats"] = stats
    return out


def job_json(job: Job) -> dict:
    return {
        "jobId": job.id,
        "state": job.state,
        "failedReason": job.failed_reason,
        "result": orjson.loads(job.result) if job.result else None,
        "attempts": job.attempts,
        "createdAt": iso(job.created_at),
        "updatedAt": iso(job.updated_at),
    }


def job_started_json(lib: Library, job: Job, media: Media, base: str) -> dict:
    """The 202 of an asynchronous upload, crop or variants request of the /api/v1 API."""
    return {"jobId": job.id, "state": job.state, "media": media_json(lib, media, base)}


def now_iso() -> str:
    return iso(datetime.now(UTC).replace(tzinfo=None))
