"""A media's versions and what hangs on them: variants, placeholders, crop (a new version, the
pointer moved), delete. Every verb works in its caller's transaction and never commits: what is
stored before the commit is deleted again if it rolls back, what is unlinked is deleted after it."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import pyvips
from sqlalchemy.orm import Session

from ...errors import BadRequest, Conflict, TooLarge
from ...media import hashes, pipeline
from ...media.edit import Edit, edit_image
from ...media.spec import TransformSpec
from .. import unit
from ..ids import new_id
from ..models import Job, Media, StoredObject, Variant, Version, now
from ..repositories import versions as versions_repo
from ..repositories.versions import reload_media
from .base import Core

log = logging.getLogger("mediaproxy.library")


@dataclass
class Rendering:
    """What ``Versions.render`` made before any row was written: the variants stored (name →
    (key, output); None when none were asked for) and the placeholders (when ``placeholders``:
    the pipeline took the image; either hash may be None, for an image it cannot decode)."""

    variants: dict[str, tuple[str, pipeline.Output]] | None = None
    placeholders: bool = False
    blur_hash: str | None = None
    thumb_hash: str | None = None
    sha256: str | None = None  # the original's, when it was asked for (an object not hashed yet)


class Versions:
    def __init__(self, core: Core, jobs):
        self.core = core
        self.jobs = jobs  # services.jobs.Jobs: a crop job completes with its pointer's move

    # -- variants and placeholders ---------------------------------------------------------

    @staticmethod
    def variant_spec(side: int, fit: str) -> TransformSpec:
        return TransformSpec(width=side or None, height=side or None, fit=fit, position="center",
                             format="webp", quality=None, lossless=False, animated=None)

    def render_variants(self, s: Session, media: Media) -> list[Variant]:
        """Render every configured variant of the current version through the origin's pipeline,
        and its placeholders, then record them (``prepare``, ``record``)."""
        return self.record(s, media, self.prepare(s, media, variants=True))

    def prepare(self, s: Session, media: Media, source=None, *, variants: bool) -> Rendering:
        """The CPU work of the media's current version, touching no row (``render``): its variants
        (with ``variants``) and placeholders, and its original's SHA-256 when the object has none
        yet (bytes that came by presigned PUT). ``source`` is what the stored original is known
        to be, when the object's row does not say it yet: a presigned upload checked and not yet
        recorded (``Ingest.check_upload``), whose row is written after the rendering."""
        core = self.core
        version = media.current
        obj = version.object
        source = source if source is not None else obj
        if variants and not self.renderable(source) and not self.over_pixel_limit(source):
            raise TooLarge(f"over the {core.ctx.settings.max_source_bytes} byte limit of the image pipeline: "
                           "stored, but no variants")
        recorded = frozenset(x.key for x in version.variants) if variants else frozenset()
        return self.render(s, source, version.folder, media.id, variants=variants, recorded=recorded,
                           version_id=version.id, hashed=(source.sha256 or obj.sha256) is None)

    def render(self, s: Session, obj: StoredObject, folder: str, media_id: str, *, variants: bool,
               recorded: frozenset[str] = frozenset(), version_id: str | None = None,
               hashed: bool = False) -> Rendering:
        """The CPU work of a version, touching no row: its variants (with ``variants``; stored under
        ``folder``) and placeholders, from the stored object ``obj``, whose type, size and
        dimensions say what the pipeline takes (none of it for what it does not: stored and
        served, not rendered). ``record`` writes them.

        On SQLite the first write of a transaction takes the database's write lock until the
        transaction ends, so a request renders before it writes anything: every other write waits
        for a write lock, never for a render. The variants stored are deleted if the session's
        transaction does not commit (but the keys ``recorded``, which committed rows name; and those
        of a ``version_id`` committed before, left to the janitor: a concurrent rendering of the same
        version stores the same keys). With ``hashed``, the original's SHA-256 too."""
        core = self.core
        if variants and self.over_pixel_limit(obj):
            raise TooLarge(f"over the {core.ctx.limits.max_pixels} pixel limit of the image pipeline: no variants")
        if not self.renderable(obj):
            return Rendering(sha256=core.hash_stored(obj) if hashed else None)
        data = core.ctx.storage.get(obj.bucket, obj.key, core.ctx.settings.max_source_bytes)[1]
        made: dict[str, tuple[str, pipeline.Output]] | None = None
        if variants:
            made = {}
            core.forget_on_rollback(s, lambda: [(core.bucket, key) for key, _ in made.values() if key not in recorded],
                                    version_id)
            self._render_variants(data, folder, made)
        blur, thumb = self.placeholder_hashes(media_id, obj.mime_type, data)
        return Rendering(made, True, blur, thumb, hashlib.sha256(data).hexdigest() if hashed else None)

    def record(self, s: Session, media: Media, made: Rendering) -> list[Variant]:
        """Write what ``render`` made for the media's current version: its variant rows (a variant
        rendered again keeps its row), its placeholders, its original's hash."""
        core = self.core
        version = media.current
        if made.sha256 is not None and version.object.sha256 is None:
            version.object.sha256 = made.sha256
        if made.placeholders:
            media.blur_hash, media.thumb_hash = made.blur_hash, made.thumb_hash
        if made.variants is not None:
            existing = {x.name: x for x in version.variants}
            for name, (key, out) in made.variants.items():
                row = existing.get(name)
                if row is None:
                    row = Variant(name=name, bucket=core.bucket, key=key, width=0, height=0, size=0, mime_type="")
                    version.variants.append(row)
                row.key, row.width, row.height = key, out.width, out.height
                row.size, row.mime_type = len(out.body), out.content_type
            media.updated_at = now()
        s.flush()
        return list(version.variants)

    def _render_variants(self, data: bytes, folder: str,
                         made: dict[str, tuple[str, pipeline.Output]] | None = None
                         ) -> dict[str, tuple[str, pipeline.Output]]:
        """Every configured variant of ``data``, stored under ``folder`` (keys named by variant: a
        second rendering overwrites the first). Each stored one is added to ``made`` as it is
        stored, so a caller that sees a failure knows what to delete."""
        core = self.core
        made = {} if made is None else made
        for name, side, fit in core.settings.variants:
            with core.ctx.transform_slot():
                out = pipeline.transform(data, self.variant_spec(side, fit), core.ctx.limits)
            key = f"{folder}/{name}.{out.format}"
            core.ctx.storage.put(core.bucket, key, out.body, out.content_type)
            made[name] = (key, out)
        return made

    def renderable(self, media: Media | StoredObject) -> bool:
        """Images the origin's pipeline would take: larger ones (in bytes, or in pixels by their
        header) are stored and served, not rendered, as the origin answers 413 for them. A record
        or its stored object (an upload not recorded yet): both carry the type, size and dimensions."""
        if not media.mime_type.startswith("image/") or media.size > self.core.ctx.settings.max_source_bytes:
            return False
        return not self.over_pixel_limit(media)

    def over_pixel_limit(self, media: Media | StoredObject) -> bool:
        """Does the image's header claim more pixels than the pipeline decodes (a decompression bomb)?"""
        return bool(media.width and media.height and media.width * media.height > self.core.ctx.limits.max_pixels)

    def placeholder_hashes(self, media_id: str, mime_type: str, data: bytes) -> tuple[str | None, str | None]:
        """(BlurHash, ThumbHash) of an image (``media.hashes``), inside a transform place;
        (None, None) for anything else, or an image it cannot decode."""
        if not mime_type.startswith("image/"):
            return None, None
        try:
            with self.core.ctx.transform_slot():
                return hashes.placeholders(data, self.core.ctx.limits)
        except (pyvips.Error, BadRequest, TooLarge) as exc:
            reason = exc.message if isinstance(exc, pyvips.Error) else exc.reason
            log.warning("no placeholders for media %s: %s", media_id, (reason or "").strip())
            return None, None

    def finalize(self, s: Session, media: Media) -> Media:
        """The placeholder job: BlurHash (and the canonical hash when the bytes came by presigned
        PUT), computed before they are written."""
        self.record(s, media, self.prepare(s, media, variants=False))
        return media

    # -- crop: a new version, the pointer moved -------------------------------------------

    def crop(self, s: Session, media: Media, p: dict, job: Job | None = None, owner: str | None = None,
             before_write: Callable[[], None] | None = None) -> Media:
        """Crop/rotate/scale/re-encode the current original into a new version; the old one is removed.
        The rendering comes before the first write (``before_write``, if given, is that write: the
        record of an upload completed by this request, ``Ingest.check_notice``).

        Idempotent by construction. The new version is made from ``base`` (the current version;
        a job's recorded ``base_version_id``) and the media moves to it by compare-and-set
        (``… WHERE current_version_id = base``), in the transaction that completes the job while
        its runner holds the lease. A job's version is named after the job, so every attempt writes
        the same keys (a rerun overwrites what a killed attempt left); a crop that loses the race
        removes what it wrote. The old version's objects are removed after the commit."""
        core = self.core
        base_id = job.base_version_id if job is not None else media.current_version_id
        version_id = job.id if job is not None else new_id()
        if media.current_version_id != base_id or media.current is None:
            raise Conflict("the media changed since this crop was asked for")
        data = core.original(media)
        out = edit_image(data, Edit.of(p), core.ctx.limits, core.ctx.transform_slot)
        base = media.current
        folder = f"{base.folder.rsplit('/', 1)[0]}/{version_id}"
        stem = media.filename.rsplit(".", 1)[0] if "." in media.filename else media.filename
        filename = f"{stem}.{'jpg' if out.format == 'jpeg' else out.format}"
        key = f"{folder}/{core.original_name(filename)}"
        if job is None:  # a job's output is removed only once it has failed for good: a rerun writes the same keys
            unit.after_rollback(s, lambda: self._drop_output(media.id, version_id, folder))
        core.ctx.storage.put(core.bucket, key, out.body, out.content_type)
        made = {}
        if p.get("regenerateVariants") and len(out.body) <= core.ctx.settings.max_source_bytes:
            made = self._render_variants(out.body, folder)
        blur, thumb = self.placeholder_hashes(media.id, out.content_type, out.body)
        if job is not None and core.settings.job_test_delay:
            time.sleep(core.settings.job_test_delay)  # tests: a crop that is long enough to be interrupted
        if before_write is not None:
            before_write()
        obj = StoredObject(org_id=media.org_id, bucket=core.bucket, key=key,
                           sha256=hashlib.sha256(out.body).hexdigest(), size=len(out.body),
                           mime_type=out.content_type, width=out.width, height=out.height)
        s.add(obj)
        s.flush()
        s.add(Version(id=version_id, media_id=media.id, object_id=obj.id, folder=folder))
        s.flush()
        for name, (vkey, vout) in made.items():
            s.add(Variant(version_id=version_id, name=name, bucket=core.bucket, key=vkey, width=vout.width,
                          height=vout.height, size=len(vout.body), mime_type=vout.content_type))
        moved = versions_repo.move_pointer(
            s, media.id, base_id, version_id, filename=filename, mime_type=out.content_type, size=len(out.body),
            width=out.width, height=out.height, updated_at=now(), blur_hash=blur, thumb_hash=thumb)
        if not moved:
            raise Conflict("the media changed while the crop ran")
        if job is not None:
            result = {"media": media.id, "objectKey": key, "variants": list(made)}
            self.jobs.complete(s, job.id, owner, result, result_version_id=version_id)
        # once the pointer's move commits, the old version is garbage
        core.remove_after_commit(s, self.unlink_versions(s, media, keep=version_id))
        return reload_media(s, media.id)

    def _drop_output(self, media_id: str, version_id: str, folder: str) -> None:
        """Remove what a crop that did not happen wrote: only once the database says its version
        does not exist (a commit that failed on a lost connection may have landed)."""
        core = self.core
        with core.db.transaction() as t:
            if versions_repo.exists(t, version_id):
                return
        core.remove((core.bucket, k) for k in list(core.ctx.storage.list(core.bucket, folder + "/")))
        log.info("removed the output of a crop of %s that did not happen", media_id)

    def job_output_folder(self, s: Session, job: Job) -> str | None:
        """The folder a crop job that failed for good wrote, unless its media points at it (the
        version is named after the job); None for anything else."""
        if job.kind != "crop" or job.media_id is None:
            return None
        return versions_repo.crop_folder(s, job.id, job.media_id, job.base_version_id, job.org_id)

    def drop_folder(self, folder: str) -> None:
        core = self.core
        core.remove((core.bucket, k) for k in list(core.ctx.storage.list(core.bucket, folder + "/")))

    # -- delete ---------------------------------------------------------------------------------

    def delete(self, s: Session, media: Media) -> int:
        """Remove the record with every version in the session's transaction; once it commits, the
        original and every variant (bytes shared with another record stay). Returns how many keys."""
        media.current_version_id, media.current = None, None
        s.flush()
        keys = self.unlink_versions(s, media, None, drop_media=True)
        self.core.remove_after_commit(s, keys)
        return len(keys)

    def unlink_versions(self, s: Session, media: Media, keep: str | None,
                        drop_media: bool = False) -> list[tuple[str, str]]:
        """Delete the versions of ``media`` (all but ``keep``), and the record itself with
        ``drop_media``, and the stored objects no other version still uses, in the caller's
        transaction; the keys to remove once it has committed."""
        old = [v for v in versions_repo.of_media(s, media.id) if v.id != keep]
        keys = [(x.bucket, x.key) for v in old for x in v.variants]
        objects = {v.object_id: v.object for v in old}
        for v in old:
            s.delete(v)
        if drop_media:
            s.delete(media)
        s.flush()
        for oid, obj in objects.items():
            if not versions_repo.object_in_use(s, oid):
                keys.append((obj.bucket, obj.key))
                s.delete(obj)
        return keys
