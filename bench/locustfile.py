"""The real traffic shape, for bench/load.py (which writes the plan file and starts everything).

Avatars in the sizes and formats clients ask for (most requests; a few
popular ones dominate), emojis (static and animated), attachments (whole and
ranged, as video players and download managers ask), banners, signed external
images, and a share of cache misses (sizes/qualities never asked for before).
Every user sends at a constant rate (LOCUST_USER_RATE requests/s), so users x
rate is the offered load. Routes that do not answer 2xx/206/304 fail the run.
"""

from __future__ import annotations

import itertools
import json
import os
import random

from locust import FastHttpUser, HttpUser, constant_throughput, task

# bench/load.py writes the plan; the library scenario alone runs without one.
PLAN = json.loads(open(os.environ["LOCUST_PLAN"]).read()) if "LOCUST_PLAN" in os.environ else {}  # noqa: SIM115
RATE = float(os.environ.get("LOCUST_USER_RATE", "10"))
AVATAR_SIZES = [(128, 30), (64, 15), (256, 12), (80, 10), (40, 8), (32, 8), (512, 5), (1024, 2), (16, 2), (96, 8)]
AVATAR_FORMATS = [("webp", 70), ("png", 20), ("jpg", 5), ("gif", 5)]
_unique = itertools.count()


def weighted(pairs):
    values, weights = zip(*pairs, strict=True)
    return random.choices(values, weights)[0]


def popular(items: list[str]) -> str:
    """Zipf-like: the first few objects get most requests."""
    return items[min(len(items) - 1, int(random.paretovariate(1.2)) - 1)]


class Client(FastHttpUser):
    wait_time = constant_throughput(RATE)

    def _get(self, path: str, name: str, headers: dict | None = None, ok=(200,)) -> None:
        with self.client.get(path, name=name, headers=headers or {}, catch_response=True) as r:
            if r.status_code not in ok:
                r.failure(f"status {r.status_code}")

    @task(50)
    def avatar(self) -> None:
        user, h = popular(PLAN["avatars"]).split("/")
        fmt = weighted(AVATAR_FORMATS)
        stem = f"a_{h}" if fmt == "gif" and h in PLAN["animated"] else h
        self._get(f"/avatars/{user}/{stem}.{fmt}?size={weighted(AVATAR_SIZES)}", "avatar")

    @task(15)
    def emoji(self) -> None:
        e = popular(PLAN["emojis"])
        fmt = "gif" if e in PLAN["animated_emojis"] and random.random() < 0.5 else "webp"
        self._get(f"/emojis/{e}.{fmt}?size={random.choice([48, 96, 44])}&quality=lossless", "emoji")

    @task(12)
    def attachment(self) -> None:
        path = random.choice(PLAN["attachments"])
        if path.endswith(".bin"):  # a player seeking through a video
            start = random.randrange(0, PLAN["attachment_size"] // 2)
            self._get(path, "attachment range", {"Range": f"bytes={start}-{start + 65535}"}, ok=(206,))
        elif random.random() < 0.3:  # a resumed download
            self._get(path, "attachment range", {"Range": f"bytes={random.randrange(0, 1000)}-"}, ok=(206,))
        elif path.endswith(".jpg") and random.random() < 0.5:
            self._get(path + "?width=400&format=webp", "attachment resized")
        else:
            self._get(path, "attachment")

    @task(5)
    def banner(self) -> None:
        self._get(f"/banners/{popular(PLAN['banners'])}.webp?size=600", "banner")

    @task(8)
    def external(self) -> None:
        self._get(f"/external/{random.choice(PLAN['external'])}?width=320", "external")

    @task(10)
    def miss(self) -> None:
        """A URL never asked before: a real transform (about 10% of the traffic)."""
        user, h = random.choice(PLAN["avatars"]).split("/")
        q = 1 + next(_unique) % 100
        size = random.choice([48, 64, 100, 128, 160, 240, 256, 300])
        fmt = random.choice(["webp", "png", "jpg"])
        self._get(f"/avatars/{user}/{h}.{fmt}?size={size}&quality={q}", "miss")


if os.environ.get("LOCUST_LIBRARY_KEY"):
    import pyvips

    def _library_image(i: int) -> bytes:
        im = pyvips.Image.xyz(640 + i % 7, 480)
        return (im[0] % 256).cast("uchar").bandjoin([(im[1] % 256).cast("uchar"), (im[0] * 0 + i % 256).cast(
            "uchar")]).copy(interpretation="srgb").jpegsave_buffer(Q=85)

    class LibraryClient(HttpUser):  # requests-based: multipart uploads
        """The media library (MEDIAPROXY_MODE=all, a `mediaproxy worker` running): upload, get, list,
        variant fetch. Only defined with LOCUST_LIBRARY_KEY (a key from `mediaproxy keys create`):

            LOCUST_LIBRARY_KEY=mpk_... locust -f bench/locustfile.py LibraryClient -H http://127.0.0.1:8000
        """

        wait_time = constant_throughput(RATE)

        def on_start(self) -> None:
            self.headers = {"X-API-Key": os.environ["LOCUST_LIBRARY_KEY"]}
            self.ids: list[str] = []
            self.variant_urls: list[str] = []

        @task(1)
        def upload(self) -> None:
            data = _library_image(next(_unique))
            with self.client.post("/api/v1/media/upload", name="library upload", headers=self.headers,
                                  files={"file": ("load.jpg", data, "image/jpeg")},
                                  data={"generateVariants": "true", "async": "true"}, catch_response=True) as r:
                if r.status_code != 202:
                    r.failure(f"status {r.status_code}")
                    return
                self.ids.append(r.json()["media"]["id"])

        @task(6)
        def get(self) -> None:
            if not self.ids:
                return
            with self.client.get(f"/api/v1/media/{random.choice(self.ids)}", name="library get",
                                 headers=self.headers, catch_response=True) as r:
                if r.status_code != 200:
                    r.failure(f"status {r.status_code}")
                    return
                self.variant_urls.extend(v["url"] for v in r.json()["variants"] if v["url"])
                del self.variant_urls[:-200]

        @task(3)
        def list(self) -> None:
            q = random.choice(["", "&search=load", "&type=image/&sort=size&order=asc"])
            self._get(f"/api/v1/media/list?limit=20{q}", "library list", headers=self.headers)

        @task(10)
        def variant(self) -> None:
            if self.variant_urls:
                path = "/" + random.choice(self.variant_urls).split("/", 3)[3]
                self._get(path, "library variant")

        _get = Client._get
