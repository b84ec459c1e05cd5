"""Demo objects for the embedded defaults, so the printed example URLs work.

Media is generated with pyvips (no binaries in the repository)."""

from __future__ import annotations

import pyvips

from . import avatars
from .storage import Storage

USER = "80351110224678912"
GUILD = "41771983423143937"
EMOJI = "41771983429993937"
STICKER = "749054660769218631"
THEME = "0123456789abcdef"  # theme ids are 16 lowercase hex digits
CHANNEL = "112233445566778899"
ATTACHMENT = "998877665544332211"
AVATAR_HASH = "8342729096ea3675442027381ff50dfe"
ANIMATED_HASH = "a_b3f8c1d2e4a5968778695a4b3c2d1e0f"


def _gradient(width: int, height: int) -> pyvips.Image:
    xyz = pyvips.Image.xyz(width, height)
    x, y = xyz[0], xyz[1]
    r = (x * 255 / max(1, width - 1)).cast("uchar")
    g = (y * 255 / max(1, height - 1)).cast("uchar")
    b = ((x + y) * 127 / max(1, width + height - 2)).cast("uchar")
    return r.bandjoin([g, b]).copy(interpretation="srgb")


def _animation(size: int, frames: int) -> bytes:
    pages = []
    for i in range(frames):
        hue = int(255 * i / frames)
        base = pyvips.Image.black(size, size).new_from_image([hue, 255 - hue, 128]).cast("uchar")
        dot = pyvips.Image.black(size // 4, size // 4).new_from_image([255, 255, 255]).cast("uchar")
        pages.append(base.insert(dot, (size - size // 4) * i // max(1, frames - 1), size // 3))
    strip = pyvips.Image.arrayjoin(pages, across=1).copy(interpretation="srgb")
    strip.set_type(pyvips.GValue.gint_type, "page-height", size)
    strip.set_type(pyvips.GValue.array_int_type, "delay", [80] * frames)
    strip.set_type(pyvips.GValue.gint_type, "loop", 0)
    return strip.gifsave_buffer()


LOTTIE = (
    b'{"v":"5.7.4","fr":30,"ip":0,"op":60,"w":160,"h":160,"nm":"demo","ddd":0,"assets":[],'
    b'"layers":[]}'
)
THEME_CSS = b":root{--brand:#5865f2;--background:#1e1f22}\nbody{background:var(--background)}\n"


def seed(storage: Storage, cdn_bucket: str) -> list[tuple[str, str]]:
    """Write the demo objects; return (description, path) pairs of example URLs."""
    jpeg = _gradient(1024, 1024).jpegsave_buffer(Q=90)
    banner = _gradient(1920, 1080).jpegsave_buffer(Q=90)
    png = _gradient(256, 256).bandjoin(200).copy(interpretation="srgb").pngsave_buffer()
    anim = _animation(160, 12)
    objects = {
        f"avatars/{USER}/{AVATAR_HASH}": (jpeg, "image/jpeg"),
        f"avatars/{USER}/{ANIMATED_HASH[2:]}": (anim, "image/gif"),
        f"icons/{GUILD}/{AVATAR_HASH}": (png, "image/png"),
        f"banners/{GUILD}/{AVATAR_HASH}": (banner, "image/jpeg"),
        f"splashes/{GUILD}/{AVATAR_HASH}": (banner, "image/jpeg"),
        f"embed-splashes/{GUILD}/{AVATAR_HASH}": (banner, "image/jpeg"),
        f"emojis/{EMOJI}": (anim, "image/gif"),
        f"stickers/{STICKER}": (LOTTIE, "application/json"),
        f"guilds/{GUILD}/users/{USER}/avatars/{AVATAR_HASH}": (jpeg, "image/jpeg"),
        f"guilds/{GUILD}/users/{USER}/banners/{AVATAR_HASH}": (banner, "image/jpeg"),
        f"themes/{THEME}.css": (THEME_CSS, "text/css"),
        f"attachments/{CHANNEL}/{ATTACHMENT}/photo.jpg": (banner, "image/jpeg"),
    }
    for key, (data, ctype) in objects.items():
        storage.put(cdn_bucket, key, data, ctype)
    return [
        ("256px WebP avatar", f"/avatars/{USER}/{AVATAR_HASH}.webp?size=256"),
        ("animated avatar, kept animated", f"/avatars/{USER}/{ANIMATED_HASH}.gif?size=128"),
        ("avatar cropped from the top", f"/avatars/{USER}/{AVATAR_HASH}.png?size=64&position=top"),
        ("guild icon as AVIF", f"/icons/{GUILD}/{AVATAR_HASH}.avif?size=96"),
        ("banner 600px wide", f"/banners/{GUILD}/{AVATAR_HASH}.jpg?width=600"),
        ("animated emoji as WebP", f"/emojis/{EMOJI}.webp?size=48&animated=true"),
        ("Lottie sticker", f"/stickers/{STICKER}.json"),
        ("member avatar", f"/guilds/{GUILD}/users/{USER}/avatars/{AVATAR_HASH}.jpg?size=128&quality=low"),
        ("theme", f"/themes/{THEME}.css"),
        ("attachment, original bytes", f"/attachments/{CHANNEL}/{ATTACHMENT}/photo.jpg"),
        ("attachment, resized", f"/attachments/{CHANNEL}/{ATTACHMENT}/photo.jpg?width=400&format=webp"),
        ("health", "/_health"),
        ("readiness (storage answers)", "/_ready"),
        ("API documentation (Swagger UI)", "/docs"),
    ]


def seed_static(storage: Storage, static_bucket: str) -> list[tuple[str, str]]:
    """Write the six default avatars into the static bucket; return example (description, path) pairs
    for the static-assets host (``MEDIAPROXY_MODE=static``)."""
    for i in range(avatars.COUNT):
        storage.put(static_bucket, f"avatars/{i}.png", avatars.png(i), "image/png")
    index = int(USER) % avatars.COUNT
    return [
        (f"default avatar (user_id % 6 = {index})", f"/avatars/{index}.png"),
        ("the same, 64px WebP", f"/avatars/{index}.png?size=64&format=webp"),
    ]


VIDEO_KEY = "videos/demo-clip.mp4"


def _video(width: int = 640, height: int = 360, seconds: int = 4, fps: int = 24) -> bytes:
    """An H.264 MP4 (PyAV): a gradient with a white square crossing it, so frames differ."""
    import io

    import av
    import numpy as np

    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    base = np.stack([np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)),
                     (x + y) / 2], axis=2).astype(np.uint8)
    side = height // 4
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        frames = seconds * fps
        for i in range(frames):
            img = base.copy()
            left = (width - side) * i // max(1, frames - 1)
            img[height // 2 - side // 2 : height // 2 + side // 2, left : left + side] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def seed_uploads(storage: Storage, uploads_bucket: str) -> str:
    """Write the demo video into the uploads bucket (what the internal endpoints read); its key."""
    storage.put(uploads_bucket, VIDEO_KEY, _video(), "video/mp4")
    return VIDEO_KEY
