"""Every setting is declared once (mediaproxy/settings.py SETTINGS): the dataclass fields, the parsing,
check-config and docs/settings.md all come from that declaration, and agree."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from mediaproxy import settings as mod
from mediaproxy.errors import ConfigError
from mediaproxy.settings import SETTINGS, LibrarySettings, ServerSettings, Settings

ROOT = Path(__file__).resolve().parent.parent
BASE = {"MEDIAPROXY_SECRET_KEY": "s3cret"}


def test_the_committed_docs_are_current():
    committed = (ROOT / "docs" / "settings.md").read_text()
    assert committed == mod.markdown(), (
        "docs/settings.md is not what mediaproxy/settings.py declares: "
        "run `python -m mediaproxy.settings --markdown > docs/settings.md`")


def test_the_markdown_command_prints_the_docs():
    done = subprocess.run([sys.executable, "-m", "mediaproxy.settings", "--markdown"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout == mod.markdown()


def test_every_setting_is_documented_once():
    doc = mod.markdown()
    for s in SETTINGS:
        assert len(re.findall(rf"^\| `{s.env}` \|", doc, re.M)) == 1, s.env
        assert s.doc and s.group and s.parse.accepts()
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)
    assert len({s.path for s in SETTINGS}) == len(SETTINGS)


def test_the_fields_are_the_declared_settings():
    for cls, section in ((Settings, ""), (ServerSettings, "server"), (LibrarySettings, "library")):
        declared = [s.attr for s in SETTINGS if s.section == section]
        own = ["server", "library"] if cls is Settings else []
        assert [f.name for f in fields(cls)] == declared + own


def test_the_field_defaults_are_what_an_empty_environment_gives():
    """``Settings()`` and ``Settings.from_env`` without the variables agree, but where the declaration
    says the default is computed (from the machine or another setting)."""
    read = Settings.from_env(BASE)
    made = Settings()
    differ = []
    for s in SETTINGS:
        if s.computed or s.default_doc:
            continue
        got, made_value = (getattr(getattr(o, s.section) if s.section else o, s.attr) for o in (read, made))
        if not got == made_value == s.default:
            differ.append(s.env)
    assert not differ


def test_the_variables_the_code_names_are_declared():
    """A message or a comment naming a variable that no longer exists would mislead an operator."""
    named = set()
    for path in [*(ROOT / "mediaproxy").rglob("*.py"), ROOT / "gunicorn.conf.py"]:
        named |= set(re.findall(r"\bMEDIAPROXY_[A-Z0-9_]+\b", path.read_text()))
    # scripts/serve's (named in docs/settings.md) and setup.py's (build without the Cython extension)
    others = {"MEDIAPROXY_STATIC_BIND", "MEDIAPROXY_NO_NATIVE"}
    assert named - {s.env for s in SETTINGS} - others == set()


NUMBERS = [s for s in SETTINGS if isinstance(s.parse, mod.Int)]


@pytest.mark.parametrize("setting", NUMBERS, ids=[s.env for s in NUMBERS])
def test_a_number_that_is_not_one_stops_with_one_line_naming_the_variable(setting):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, setting.env: "many"})
    kind = "an integer" if type(setting.parse) is mod.Int else "a number"
    assert str(info.value) == f"{setting.env}='many': expected {kind}"


def test_computed_defaults():
    s = Settings.from_env({**BASE, "MEDIAPROXY_DATABASE_URL": "postgresql+psycopg://u:pw@db/x",
                           "MEDIAPROXY_INTERNAL_SECRET": "other", "VIPS_CONCURRENCY": "3"})
    assert s.library.migrate_on_start is False and s.internal_secret == "other" and s.server.vips_concurrency == 3
    d = s.describe()
    assert d["library"]["database_url"] == "postgresql+psycopg://u:***@db/x"
    assert list(d)[-2:] == ["server", "library"] and d["server"]["vips_concurrency"] == 3
    assert Settings.from_env(BASE).library.migrate_on_start is True
