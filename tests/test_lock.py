"""The lock files agree with the ranges setup.cfg and pyproject.toml declare: every declared
requirement is pinned at a version its range admits, every pin carries hashes, the dev lock
holds the service lock's pins at the same versions, and every package whose internals the code
uses (tests/test_package_internals.py) has an upper bound below its next major release.

When this fails after setup.cfg changed, ``scripts/lock`` refreshes the locks."""

from __future__ import annotations

import configparser
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .test_package_internals import INTERNALS

ROOT = Path(__file__).resolve().parent.parent
SERVICE = ROOT / "requirements" / "service.txt"
DEV = ROOT / "requirements" / "dev.txt"
REFRESH = "run scripts/lock to refresh the locks"


def parse_lock(text: str) -> dict[str, tuple[str, list[str]]]:
    """``{name: (version, [hashes])}`` of a ``--generate-hashes`` lock; anything but a ``name==version``
    pin (a range, a URL, an editable) is an error."""
    pins: dict[str, tuple[str, list[str]]] = {}
    # a requirement and its backslash-continued option lines form one logical line
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        spec, *options = re.split(r"\s+--", line)
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;]+)(\s*;.*)?", spec.strip())
        assert m, f"not an exact pin: {line!r}"
        hashes = [o.split("=", 1)[1] for o in options if o.startswith("hash=")]
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"{name} pinned twice"
        pins[name] = (m.group(3), hashes)
    return pins


def declared() -> dict[str, list[Requirement]]:
    """The requirements setup.cfg declares ("service", "test", "bench") and the build's ("build")."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")

    def reqs(text: str) -> list[Requirement]:
        return [Requirement(line.strip()) for line in text.splitlines()
                if line.strip() and not line.strip().startswith("#")]

    out = {"service": reqs(cfg["options"]["install_requires"])}
    for extra, text in cfg["options.extras_require"].items():
        out[extra] = reqs(text)
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    out["build"] = [Requirement(r) for r in build]
    return out


@pytest.fixture(scope="module")
def service() -> dict[str, tuple[str, list[str]]]:
    return parse_lock(SERVICE.read_text())


@pytest.fixture(scope="module")
def dev() -> dict[str, tuple[str, list[str]]]:
    return parse_lock(DEV.read_text())


def _check(reqs: list[Requirement], lock: dict[str, tuple[str, list[str]]], where: str) -> list[str]:
    problems = []
    for req in reqs:
        pin = lock.get(canonicalize_name(req.name))
        if pin is None:
            problems.append(f"{req} is not pinned in {where}")
        elif not req.specifier.contains(pin[0], prereleases=True):
            problems.append(f"{req}: {where} pins {pin[0]}, outside the declared range")
    return problems


def test_every_service_requirement_is_pinned_in_range(service):
    reqs = declared()
    problems = _check(reqs["service"] + reqs["build"], service, "requirements/service.txt")
    assert not problems, "; ".join(problems) + f" ({REFRESH})"


def test_every_requirement_and_tool_is_pinned_in_range_in_the_dev_lock(dev):
    problems = _check([r for group in declared().values() for r in group], dev, "requirements/dev.txt")
    assert not problems, "; ".join(problems) + f" ({REFRESH})"


@pytest.mark.parametrize("lock", [SERVICE, DEV], ids=lambda p: p.name)
def test_every_pin_has_a_hash(lock):
    unhashed = [name for name, (_, hashes) in parse_lock(lock.read_text()).items()
                if not hashes or not all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes)]
    assert not unhashed, f"{lock.name}: pinned without sha256 hashes: {unhashed} ({REFRESH})"


def test_the_dev_lock_holds_the_service_lock(service, dev):
    differ = {name: (version, dev.get(name, (None,))[0]) for name, (version, _) in service.items()
              if dev.get(name, (None,))[0] != version}
    assert not differ, f"service.txt pins that dev.txt lacks or pins differently (service, dev): {differ} ({REFRESH})"


def test_packages_whose_internals_are_used_have_an_upper_bound():
    """An upgrade past the next major release may remove an internal: the range stops below it."""
    reqs = {canonicalize_name(r.name): r for group in declared().values() for r in group}
    problems = []
    for package in sorted({canonicalize_name(row[0]) for row in INTERNALS}):
        req = reqs.get(package)
        if req is None:
            problems.append(f"{package} is not declared in setup.cfg")
            continue
        uppers = [Version(s.version) for s in req.specifier if s.operator in ("<", "<=")]
        lowers = [Version(s.version) for s in req.specifier if s.operator in (">=", ">", "==", "~=")]
        if not uppers or not lowers:
            problems.append(f"{req}: needs a floor and an upper bound")
        elif min(uppers) > Version(f"{max(lowers).major + 1}"):
            problems.append(f"{req}: the upper bound is past the next major release")
    assert not problems, "; ".join(problems)


def test_the_lock_parser_refuses_what_is_not_a_hashed_pin():
    digest = "sha256:" + "0" * 64
    assert parse_lock(f"a==1.0 \\\n    --hash={digest}\n    # via b\n") == {"a": ("1.0", [digest])}
    assert parse_lock("a==1.0\n")["a"][1] == []
    with pytest.raises(AssertionError):
        parse_lock("a>=1.0\n")
    with pytest.raises(AssertionError):
        parse_lock("-e .\n")
