"""Decoding a typical library request body: msgspec (the schemas of library/api/schemas.py) against
pydantic v2 models of the same fields and constraints, and against what the handlers do with it
(orjson.loads + common.decode: the wire's rules, then msgspec.convert through the same schema).
CPU time per decode, the three interleaved in each round; the best round of each.

    .venv/bin/python -m bench.schemas [--rounds 7] [--out DIR]   # with --out, writes DIR/schemas.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import orjson
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from mediaproxy.library.api import schemas as S
from mediaproxy.library.api.common import decode
from mediaproxy.library.api.v2 import album_fields

N = 20_000
ALBUM = orjson.dumps({"name": "Holidays 2026", "description": "the sea, the mountains, and the long way home",
                      "isPublic": True, "albumId": "ext-8342729096ea3675"})
CROP = orjson.dumps({"id": "8342729096ea3675442027381ff50dfe", "x": 12, "y": 40, "width": 800, "height": 600,
                     "rotate": 90, "scale": 0.5, "quality": 82, "format": "webp", "regenerateVariants": True})


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class AlbumModel(_Camel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    description: Annotated[str, Field(max_length=4096)] | None = None
    is_public: bool | None = None
    album_id: str | None = None


class CropModel(_Camel):
    id: str | None = None
    object_key: Annotated[str, Field(max_length=1024)] | None = None
    bucket_name: str | None = None
    x: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    y: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    width: Annotated[int, Field(ge=1, le=1_000_000)]
    height: Annotated[int, Field(ge=1, le=1_000_000)]
    rotate: Literal[0, 90, 180, 270] = 0
    scale: Annotated[float, Field(ge=0.01, le=4.0)] = 1.0
    quality: Annotated[int, Field(ge=1, le=100)] | None = None
    format: Literal["webp", "jpeg", "jpg", "png"] | None = None
    regenerate_variants: bool = False
    async_: bool = Field(default=False, alias="async")


def handler_album(raw: bytes):  # POST /v2/albums: JSON's types, strictly
    return album_fields(decode(orjson.loads(raw), S.AlbumInput), True)


def handler_crop(raw: bytes):  # POST /api/v1/media/crop: numbers and booleans may be strings
    return decode(orjson.loads(raw), S.CropRequest, strings=True)


def cpu_per_call(fn, arg, n: int = N) -> float:
    t = time.process_time()
    for _ in range(n):
        fn(arg)
    return (time.process_time() - t) / n * 1e9  # ns


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", type=Path, metavar="DIR", help="write schemas.json into DIR")
    args = ap.parse_args()
    album_ms, crop_ms = msgspec.json.Decoder(S.AlbumInput), msgspec.json.Decoder(S.CropRequest)
    cases = {
        "album (PATCH/POST /v2/albums)": {"msgspec": (album_ms.decode, ALBUM),
                                          "pydantic": (AlbumModel.model_validate_json, ALBUM),
                                          "handler": (handler_album, ALBUM)},
        "crop (POST /api/v1/media/crop)": {"msgspec": (crop_ms.decode, CROP),
                                           "pydantic": (CropModel.model_validate_json, CROP),
                                           "handler": (handler_crop, CROP)},
    }
    best: dict = {c: {k: float("inf") for k in ways} for c, ways in cases.items()}
    for _ in range(args.rounds):  # interleaved: a load change hits all three alike
        for case, ways in cases.items():
            for way, (fn, raw) in ways.items():
                best[case][way] = min(best[case][way], cpu_per_call(fn, raw))
    rows = [{"body": case, **{f"{w}_ns": round(v) for w, v in ways.items()},
             "pydantic_over_msgspec": round(ways["pydantic"] / ways["msgspec"], 2),
             "handler_over_msgspec": round(ways["handler"] / ways["msgspec"], 2)} for case, ways in best.items()]
    print(f"{'body':32s} {'msgspec ns':>10s} {'pydantic ns':>11s} {'handler ns':>10s} {'pyd/ms':>7s} {'hdl/ms':>7s}")
    for r in rows:
        print(f"{r['body']:32s} {r['msgspec_ns']:10d} {r['pydantic_ns']:11d} {r['handler_ns']:10d} "
              f"{r['pydantic_over_msgspec']:7.2f} {r['handler_over_msgspec']:7.2f}")
    load = os.getloadavg()[0]
    print(f"load average (1 min) at the end: {load:.2f}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "schemas.json").write_text(json.dumps({"rows": rows, "loadavg_1m": load}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
