"""Settings from the environment: defaults and validation messages."""

from __future__ import annotations

import ipaddress

import pytest

from mediaproxy.errors import ConfigError
from mediaproxy.settings import DEMO_SECRET, Settings

BASE = {"MEDIAPROXY_SECRET_KEY": "s3cret"}


def load(**env: str) -> Settings:
    return Settings.from_env({**BASE, **env})


def test_defaults():
    s = load()
    assert (s.storage, s.cdn_bucket, s.uploads_bucket) == ("./var/storage", "cdn", "uploads")
    assert s.internal_secret == "s3cret" and not s.storage_is_s3
    assert s.cache_dir == "./var/cache"
    assert s.fetch_allow_cidrs == () and s.trusted_client_cidrs == ()


def test_missing_secret_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"MEDIAPROXY_SECRET_KEY is not set.*MEDIAPROXY_DEMO=1"):
        Settings.from_env({})
    assert Settings.from_env({"MEDIAPROXY_DEMO": "1"}).secret_key == DEMO_SECRET


def test_values_are_read():
    s = load(MEDIAPROXY_STORAGE="s3", MEDIAPROXY_CDN_BUCKET="media", MEDIAPROXY_UPLOADS_BUCKET="raw",
             MEDIAPROXY_INTERNAL_SECRET="other", MEDIAPROXY_CACHE_DIR="", MEDIAPROXY_CACHE_SIZE="10_000_000",
             MEDIAPROXY_MAX_PIXELS="1000", MEDIAPROXY_FETCH_ALLOW_CIDRS="127.0.0.0/8, ::1/128;10.0.0.1",
             MEDIAPROXY_S3_ADDRESSING_STYLE="PATH", MEDIAPROXY_S3_READ_TIMEOUT="0.5")
    assert s.storage_is_s3 and (s.cdn_bucket, s.uploads_bucket) == ("media", "raw")
    assert s.internal_secret == "other" and s.cache_dir is None and s.cache_size == 10_000_000
    assert s.max_pixels == 1000 and s.s3_addressing_style == "path" and s.s3_read_timeout == 0.5
    assert s.fetch_allow_cidrs == (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"),
                                   ipaddress.ip_network("10.0.0.1/32"))


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("MEDIAPROXY_MAX_PIXELS", "lots", "MEDIAPROXY_MAX_PIXELS='lots': expected an integer"),
        ("MEDIAPROXY_MAX_PIXELS", "0", "MEDIAPROXY_MAX_PIXELS='0': must be >= 1"),
        ("MEDIAPROXY_CACHE_SIZE", "100", "MEDIAPROXY_CACHE_SIZE='100': must be >= 1048576"),
        ("MEDIAPROXY_MAX_SOURCE_BYTES", "1.5", "expected an integer"),
        ("MEDIAPROXY_S3_READ_TIMEOUT", "soon", "MEDIAPROXY_S3_READ_TIMEOUT='soon': expected a number"),
        ("MEDIAPROXY_S3_READ_TIMEOUT", "0", "MEDIAPROXY_S3_READ_TIMEOUT='0': must be >= 0.01"),
        ("MEDIAPROXY_S3_READ_TIMEOUT", "nan", "MEDIAPROXY_S3_READ_TIMEOUT='nan': expected a number"),
        ("MEDIAPROXY_TRANSFORM_WAIT", "inf", "expected a number"),
        ("MEDIAPROXY_NSFW_THRESHOLD", "2", "MEDIAPROXY_NSFW_THRESHOLD='2': must be 0.0..1.0"),
        ("MEDIAPROXY_FETCH_ALLOW_CIDRS", "10.0.0.0/8,localhost", "'localhost' is not an IP network"),
        ("MEDIAPROXY_TRUSTED_PROXY_CIDRS", "300.1.1.1", "MEDIAPROXY_TRUSTED_PROXY_CIDRS: '300.1.1.1'"),
        ("MEDIAPROXY_CDN_BUCKET", "a/b", "MEDIAPROXY_CDN_BUCKET='a/b': not a valid bucket name"),
        ("MEDIAPROXY_UPLOADS_BUCKET", "..", "not a valid bucket name"),
        ("MEDIAPROXY_S3_ADDRESSING_STYLE", "sideways", "expected auto, path or virtual"),
        ("MEDIAPROXY_ACCESS_LOG", "maybe", "MEDIAPROXY_ACCESS_LOG='maybe': expected one of 1/0, true/false"),
        ("MEDIAPROXY_MAX_CONCURRENT_TRANSFORMS", "0", "must be 1..1024"),
    ],
)
def test_validation_messages(name, value, message):
    with pytest.raises(ConfigError) as info:
        load(**{name: value})
    assert message in str(info.value)


def test_storage_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        load(MEDIAPROXY_STORAGE=str(f))


def test_describe_masks_secrets():
    d = load(MEDIAPROXY_INTERNAL_SECRET="other").describe()
    assert d["secret_key"] == "***" and d["internal_secret"] == "***"
    assert "s3cret" not in repr(d)


@pytest.mark.parametrize("value, ok", [
    ("127.0.0.1:8000", True), ("0.0.0.0:80", True), ("[::1]:8000", True), ("[::]:0", True),
    ("unix:/run/mediaproxy.sock", True), ("localhost:8000", True),
    ("8000", False), ("127.0.0.1:", False), (":8000", False), ("127.0.0.1:99999", False), ("[::1:8000", False),
    ("::1:8000", False), ("unix:", False), ("a/b:80", False),
])
def test_bind_forms(value, ok):
    if ok:
        assert load(MEDIAPROXY_BIND=value).server.bind == value
    else:
        with pytest.raises(ConfigError, match=r"MEDIAPROXY_BIND=.*expected HOST:PORT"):
            load(MEDIAPROXY_BIND=value)


def test_server_settings_and_storage_case():
    s = load(MEDIAPROXY_THREADS="8", MEDIAPROXY_LOG_LEVEL="WARNING", MEDIAPROXY_MALLOC_TRIM_INTERVAL="0.5",
             MEDIAPROXY_STORAGE="S3", MEDIAPROXY_METRICS_BIND="127.0.0.1:9100", MEDIAPROXY_WORKER_CLASS="gthread")
    assert (s.server.threads, s.server.log_level, s.server.malloc_trim_interval) == (8, "warning", 0.5)
    assert s.storage_is_s3 and s.server.metrics_bind == "127.0.0.1:9100" and s.server.worker_class == "gthread"
    assert s.describe()["server"]["threads"] == 8
    with pytest.raises(ConfigError, match=r"MEDIAPROXY_WORKER_CLASS=.x;y.: expected a dotted class path"):
        load(MEDIAPROXY_WORKER_CLASS="x;y")
    with pytest.raises(ConfigError, match=r"MEDIAPROXY_METRICS_BIND=.unix:/x.: expected HOST:PORT"):
        load(MEDIAPROXY_METRICS_BIND="unix:/x")


@pytest.mark.parametrize("name", ["MEDIAPROXY_CDN_BUCKET", "MEDIAPROXY_UPLOADS_BUCKET", "MEDIAPROXY_STATIC_BUCKET"])
def test_the_library_bucket_is_never_one_the_origin_serves(name):
    """The static host serves every key of its bucket: the library's private originals must not be in it."""
    with pytest.raises(ConfigError, match=f"MEDIAPROXY_LIBRARY_BUCKET='library': must differ from {name}"):
        Settings.from_env({"MEDIAPROXY_SECRET_KEY": "x", name: "library"})
