"""The /api/v1 API (``/healthz``, ``/api/v1/media/...``): HTTP ↔ service calls, nothing more."""

from __future__ import annotations

import mimetypes
from datetime import UTC, datetime, timedelta

import falcon
from msgspec import UNSET

from ...clientip import NetworkSet, client_address
from ...errors import BadRequest, Forbidden, NotFound, UnsupportedType
from ...routes.attachments import SANDBOX
from ...routes.common import serve_stored
from ..repositories import ping
from ..services.base import iso
from ..services.signed import check_signature
from . import presenters
from . import schemas as S
from .common import (
    PUBLIC,
    TOKEN,
    Resource,
    body_stream,
    form,
    json_body,
    params,
    query,
    receive_upload,
    send_json,
    upload_place,
)

P = "/api/v1/media"
FORM_FIELDS = tuple(f for f in S.fields(S.UploadForm) if f != "file")
UNKNOWN = "application/octet-stream"  # a filename's type that says nothing (.bin)


class Health(Resource):
    auth = PUBLIC

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            ping(req.context.db)
        except Exception:
            send_json(resp, {"status": "error", "database": "unreachable"}, 503)
            return
        send_json(resp, {"status": "ok", "database": "ok", "timestamp": presenters.now_iso()})


class Upload(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        org = self.org(req)
        lib = self.library

        def validate(fields: dict) -> tuple[dict, bool, bool]:
            f = form(fields, S.UploadForm)
            if f.org_slug and f.org_slug != org.slug:  # sent empty: not given
                raise Forbidden("orgSlug is not the API key's organization")
            fields = {k: None if v is UNSET else v for k, v in
                      (("alt", f.alt), ("caption", f.caption), ("description", f.description))}
            return {**fields, "is_private": f.is_private}, f.generate_variants, f.async_

        up, obj, (fields, variants, run_async) = receive_upload(req, lib, org, FORM_FIELDS, validate)
        s = req.context.db
        if run_async:
            # the job is written with the record (the outbox): an answer that says the upload is
            # stored also says its job will run, once the queue takes it
            media = lib.ingest.create_media(s, up, obj, fields=fields, job="variants" if variants else "finalize")
            send_json(resp, presenters.job_started_json(lib, up.job, media, self.base(req)), 202)
            return
        # the variants and placeholders are made before the record is written (on SQLite the first
        # write holds the database's write lock until the commit: no other write waits for them).
        # A failure (variants of a decompression bomb: 413) rolls the request's one transaction
        # back: no record, and the bytes stored for it are deleted. Files the pipeline does not
        # take (over MEDIAPROXY_MAX_SOURCE_BYTES) are stored and served, without variants.
        lib.ingest.forget_on_rollback(s, up, obj)
        made = lib.versions.render(s, obj, up.folder, up.media_id, variants=variants)
        media = lib.ingest.create_media(s, up, obj, fields=fields)
        lib.versions.record(s, media, made)
        send_json(resp, presenters.media_json(lib, media, self.base(req)), 201)


class Presigned(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        org = self.org(req)
        p = params(req, S.PresignRequest)
        if p.org_slug not in (UNSET, None) and p.org_slug != org.slug:
            raise Forbidden("orgSlug is not the API key's organization")
        filename = p.filename
        allowed = self.library.settings.allowed_types
        # mimeType is optional in the /api/v1 API: the filename's, else none at all, and either way the
        # bytes decide when the upload completes (a type they do not show is refused then)
        mime = (p.mime_type or mimetypes.guess_type(filename)[0] or "").lower() or None
        if mime == UNKNOWN:
            mime = None
        if mime is not None and mime not in allowed:
            raise falcon_415(mime, allowed)
        size = p.size or None
        media, signed = self.library.ingest.presign_upload(req.context.db, org, self.base(req), filename, mime, size)
        send_json(resp, {**signed, "id": media.id, "bucket": self.library.bucket}, 201)


def falcon_415(mime: str, allowed) -> Exception:
    return UnsupportedType(f"{mime} is not allowed; allowed: {', '.join(sorted(allowed))}")


class One(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, media_id: str) -> None:
        media = self.library.catalog.get(req.context.db, self.org(req), media_id)
        send_json(resp, presenters.media_json(self.library, media, self.base(req)))

    def on_patch(self, req: falcon.Request, resp: falcon.Response, media_id: str) -> None:
        org = self.org(req)
        patch = json_body(req, S.MediaPatch, strings=True)
        changes = {f: v for f in patch.__struct_fields__ if (v := getattr(patch, f)) is not UNSET}
        media = noticed(self.library, req.context.db, org, media_id)
        self.library.catalog.patch(req.context.db, media, changes)
        send_json(resp, presenters.media_json(self.library, media, self.base(req)))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, media_id: str) -> None:
        media = self.library.catalog.get(req.context.db, self.org(req), media_id)
        n = self.library.versions.delete(req.context.db, media)
        send_json(resp, {"deleted": True, "id": media_id, "objectsDeleted": n})


def noticed(lib, s, org, media_id: str):
    """The organization's media ``media_id``, for a write that needs its bytes or answers the
    record: a presigned upload straight to the store that is still waiting is completed first if
    its bytes have arrived (``Ingest.notice``; reads never complete it: the workers' sweep does)."""
    media = lib.catalog.get(s, org, media_id)
    lib.ingest.notice(s, org, media)
    return media


class ListMedia(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        org = self.org(req)
        q = query(req, S.ListQuery)
        items, total = self.library.catalog.list(req.context.db, org, limit=q.limit, offset=q.offset,
                                                 search=q.search or None, mime_prefix=q.type or None, sort=q.sort,
                                                 order=q.order.lower())
        base = self.base(req)
        send_json(resp, {"items": [presenters.media_json(self.library, m, base) for m in items], "total": total,
                         "limit": q.limit, "offset": q.offset})


class Batch(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        org = self.org(req)
        ids = params(req, S.BatchRequest).ids
        items = self.library.catalog.batch(req.context.db, org, ids)
        base = self.base(req)
        found = {m.id for m in items}
        send_json(resp, {"items": [presenters.media_json(self.library, m, base) for m in items],
                         "missing": [i for i in ids if i not in found]})


class Variants(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, media_id: str) -> None:
        media = self.library.catalog.get(req.context.db, self.org(req), media_id)
        send_json(resp, {"id": media.id, "variants": presenters.variants_json(self.library, media, self.base(req))})


class Crop(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        org = self.org(req)
        p = params(req, S.CropRequest)
        lib = self.library
        crop = {"x": p.x, "y": p.y, "width": p.width, "height": p.height, "rotate": p.rotate, "scale": p.scale,
                "quality": p.quality or None, "format": (p.format or "").lower() or None,
                "regenerateVariants": p.regenerate_variants}
        s = req.context.db
        finish_upload = None
        if p.id:
            media = lib.catalog.get(s, org, p.id)
            # a waiting presigned upload is completed first; a synchronous crop records it only
            # after its rendering (render first, then write)
            if p.async_:
                lib.ingest.notice(s, org, media)
            else:
                finish_upload = lib.ingest.check_notice(s, org, media)
        else:
            media = lib.catalog.by_key(s, org, p.bucket_name or p.bucket or None, p.object_key)
        if p.async_:
            job = lib.jobs.enqueue(s, org, "crop", media, crop)
            send_json(resp, presenters.job_started_json(lib, job, media, self.base(req)), 202)
            return
        lib.versions.crop(s, media, crop, before_write=finish_upload)
        send_json(resp, presenters.media_json(lib, media, self.base(req)))


class Regenerate(Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        org = self.org(req)
        lib = self.library
        s = req.context.db
        media = by_key(lib, s, org, params(req, S.ByKey))
        job = lib.jobs.enqueue(s, org, "variants", media, {})
        send_json(resp, presenters.job_started_json(lib, job, media, self.base(req)), 202)


def by_key(lib, s, org, p: S.ByKey):
    """The media a request names by ``id``, or by ``objectKey`` (and ``bucketName``)."""
    if p.id:
        return noticed(lib, s, org, p.id)
    return lib.catalog.by_key(s, org, p.bucket_name or p.bucket or None, p.object_key)


class VariantsInfo(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        org = self.org(req)
        q = query(req, S.KeyQuery)
        media = self.library.catalog.by_key(req.context.db, org, q.bucket or q.bucket_name or None, q.object_key)
        base = self.base(req)
        send_json(resp, {"id": media.id, "objectKey": media.current.object.key, "bucket": self.library.bucket,
                         "variants": presenters.variants_json(self.library, media, base)})


class VariantRedirect(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, bucket: str, name: str, folder: str) -> None:
        org = self.org(req)
        lib = self.library
        media, variant = lib.catalog.variant_by_folder(req.context.db, org, bucket, folder.strip("/"), name)
        if media.is_private:
            url = lib.catalog.presign_download(self.base(req), variant.key, lib.settings.presign_default,
                                               variant.mime_type)
        else:
            url = presenters.public_url(lib, self.base(req), variant.key)
        resp.status = falcon.HTTP_302
        resp.set_header("Location", url)
        resp.set_header("Cache-Control", "no-store")


class Presign(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        org = self.org(req)
        q = query(req, S.PresignQuery)
        lib = self.library
        key = q.object_key
        expires = lib.catalog.expiry(None if q.expiry is UNSET else q.expiry)
        db = req.context.db
        lib.catalog.owned_key(db, org, q.bucket or q.bucket_name or None, key)
        at = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=expires)
        # the type recorded from the bytes, never what the uploader told the store
        url = lib.catalog.presign_download(self.base(req), key, expires, lib.catalog.key_mime(db, lib.bucket, key),
                                   lib.catalog.own_disposition(db, lib.bucket, key))
        send_json(resp, {"url": url, "objectKey": key,
                         "bucket": lib.bucket, "expiresIn": expires, "expiresAt": iso(at)})


class Download(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, bucket: str, key: str) -> None:
        org = self.org(req)
        self.library.catalog.owned_key(req.context.db, org, bucket, key)
        # private if any record sharing the bytes is (identical uploads of the presigned /media API share one object)
        private = self.library.catalog.key_is_private(req.context.db, bucket, key)
        serve_object(req, resp, self.library, bucket, key, private)

    on_head = on_get


class Signed(Resource):
    """The local backend's presigned URLs (S3 answers its own): GET downloads, PUT uploads."""

    auth = TOKEN  # the URL's signature (lib_check)

    def on_get(self, req: falcon.Request, resp: falcon.Response, bucket: str, key: str) -> None:
        lib = self.library
        lib_check(req, "GET", bucket, key, lib)
        private = lib.catalog.key_is_private(req.context.db, bucket, key)
        serve_object(req, resp, lib, bucket, key, private)

    on_head = on_get

    def on_put(self, req: falcon.Request, resp: falcon.Response, bucket: str, key: str) -> None:
        lib = self.library
        size = lib_check(req, "PUT", bucket, key, lib)
        if size is not None and req.content_length != size:
            # as S3 answers a PUT whose Content-Length is not the signed one; nothing is read
            raise Forbidden(f"this URL takes exactly {size} bytes, with that Content-Length")
        sender = client_address(req.env, NetworkSet(lib.ctx.settings.trusted_proxy_cidrs))
        with upload_place(req, lib, f"address {sender}"):  # a signed URL names no client: its sender
            lib.ingest.receive_put(req.context.db, bucket, key, body_stream(req), req.content_length,
                            req.get_header("Content-Disposition"))
        resp.status = falcon.HTTP_200
        resp.set_header("Cache-Control", "no-store")
        send_json(resp, {"objectKey": key, "bucket": bucket, "uploaded": True})


def lib_check(req: falcon.Request, method: str, bucket: str, key: str, lib) -> int | None:
    """403 unless the URL's signature is right and unexpired; a PUT's signed size (None without)."""
    if bucket != lib.bucket:
        raise NotFound("no such object")
    try:
        q = query(req, S.SignedPutQuery if method == "PUT" else S.SignedQuery)
    except BadRequest:  # a signature that cannot be read is a wrong one
        raise Forbidden("missing or malformed signature") from None
    size = None if method != "PUT" or q.size is UNSET else q.size
    check_signature(method, bucket, key, str(q.expires), q.signature, lib.ctx.settings.secret_key,
                    None if size is None else str(size))
    return size


def serve_object(req, resp, lib, bucket: str, key: str, private: bool) -> None:
    # The type recorded at ingest (from the bytes), never one guessed from the key's file name
    # (`evil.html` holding GIF magic and a script), and sandboxed: nothing stored runs on this host.
    serve_stored(req, resp, lib.ctx, bucket, key, lib.catalog.key_mime(req.context.db, bucket, key))
    resp.set_header("Content-Security-Policy", SANDBOX)
    if private:
        # Objects never change under a key, but a private one must stay out of shared caches.
        resp.set_header("Cache-Control", "private, max-age=31536000, immutable")


class Delete(Resource):
    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        org = self.org(req)
        p = params(req, S.ByKey)
        lib = self.library
        s = req.context.db
        if p.id:
            media = lib.catalog.get(s, org, p.id)
        else:
            media = lib.catalog.by_key(s, org, p.bucket_name or p.bucket or None, p.object_key)
        mid = media.id
        n = lib.versions.delete(s, media)
        send_json(resp, {"deleted": True, "id": mid, "objectsDeleted": n})


class JobStatus(Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        job = self.library.jobs.get(req.context.db, self.org(req), job_id)
        send_json(resp, presenters.job_json(job))


# The route table (the OpenAPI document is generated from it: library/api/openapi.py)
ROUTES = (
    ("/healthz", Health),
    (f"{P}/upload", Upload),
    (f"{P}/upload/presigned", Presigned),
    (f"{P}/list", ListMedia),
    (f"{P}/batch", Batch),
    (f"{P}/crop", Crop),
    (f"{P}/variants", Regenerate),
    (f"{P}/variants/info", VariantsInfo),
    (f"{P}/variant/{{bucket}}/{{name}}/{{folder:path}}", VariantRedirect),
    (f"{P}/presign", Presign),
    (f"{P}/download/{{bucket}}/{{key:path}}", Download),
    (f"{P}/signed/{{bucket}}/{{key:path}}", Signed),
    (f"{P}/job/{{job_id}}", JobStatus),
    (f"{P}/{{media_id}}", One),
    (f"{P}/{{media_id}}/variants", Variants),
    (f"{P}/", Delete),
    (P, Delete),
)


def add_routes(app: falcon.App, lib) -> None:
    for template, resource in ROUTES:
        app.add_route(template, resource(lib))

