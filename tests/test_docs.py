"""The documentation stays true to the repository: links resolve inside it, the code maps name
every module that exists (and nothing that does not), and neither code nor docs speak in ticket
or planning-document names instead of the domain's."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# [text](target) and [label]: target; images too. Code spans are removed first, so a link written
# as an example inside backticks is not one.
_INLINE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")


def _prose(text: str) -> str:
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def _links(text: str) -> list[str]:
    prose = _prose(text)
    return _INLINE.findall(prose) + _REFERENCE.findall(prose)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _FENCE.sub("", path.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = _slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_every_relative_link_resolves_inside_the_repository():
    problems = []
    checked = 0
    for doc in DOCS:
        name = doc.relative_to(ROOT)
        for target in _links(doc.read_text()):
            if re.match(r"(https?|mailto):", target):
                continue
            if target.startswith(("/", "file:", "~")) or re.match(r"[A-Za-z]:[\\/]", target):
                problems.append(f"{name}: absolute path {target!r}")
                continue
            path_part, _, anchor = target.partition("#")
            dest = (doc.parent / path_part).resolve() if path_part else doc
            checked += 1
            if not dest.is_relative_to(ROOT):
                problems.append(f"{name}: {target!r} points outside the repository")
            elif not dest.exists():
                problems.append(f"{name}: {target!r} does not exist")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                problems.append(f"{name}: {target!r}: no heading with that anchor in {dest.relative_to(ROOT)}")
    assert checked > 20  # the parser still finds the links
    assert not problems, "\n".join(problems)


def test_docs_name_nothing_outside_the_repository():
    # not even as text: what the code implements is described in docs/, not in files beside the clone
    problems = []
    for doc in DOCS:
        for i, line in enumerate(doc.read_text().splitlines(), 1):
            if re.search(r"\.\./shared|/work/|/home/|/Users/", line):
                problems.append(f"{doc.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not problems, "\n".join(problems)


# Ticket and planning-document names (a numbered seed or issue, "as the ticket found") stand in for
# what a thing is. The code and docs name the APIs and the measurements instead.
_NAMES = [
    re.compile(r"(?<![a-z])seeds?[ _-]?0\d\d", re.I),  # a numbered seed, with or without a separator
    re.compile(r"(?<![a-z])issues? ?#?\d+", re.I),  # a numbered issue
    re.compile(r"\bthe (?:issue|seed)s?(?:'s)?\b", re.I),  # the ticket itself, unnumbered
    re.compile(r"\b(?:CONTRACT|LIBRARY|DESIGN)\.md\b"),  # documents outside the repository
    re.compile(r"\.\./shared"),
]
_SCANNED = ["mediaproxy", "docs", "tests", "bench", "scripts", "native", "deploy", ".ci", "README.md",
            "gunicorn.conf.py", "setup.py", "setup.cfg", "pyproject.toml", "Dockerfile"]
_SKIP_DIRS = {"__pycache__", ".venv", "results"}


def _scanned_files():
    for entry in _SCANNED:
        path = ROOT / entry
        if path.is_file():
            yield path
        elif path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.is_file() and not _SKIP_DIRS.intersection(f.relative_to(ROOT).parts) \
                        and not f.name.startswith(".venv"):
                    yield f


def test_no_ticket_or_planning_document_names():
    problems = []
    scanned = 0
    for f in _scanned_files():
        rel = f.relative_to(ROOT).as_posix()
        if any(p.search(rel) for p in _NAMES):
            problems.append(f"{rel}: the file's name")
        try:
            text = f.read_text()
        except UnicodeDecodeError:
            continue  # binary (the compiled extension, images)
        scanned += 1
        for i, line in enumerate(text.splitlines(), 1):
            for p in _NAMES:
                m = p.search(line)
                if m:
                    problems.append(f"{rel}:{i}: {m.group(0)!r} in {line.strip()[:120]}")
                    break
    assert scanned > 100
    assert not problems, f"{len(problems)} places name tickets or planning documents:\n" + "\n".join(problems)


def _block_after(doc: Path, heading: str) -> list[str]:
    text = doc.read_text()
    start = text.index(heading)
    m = re.compile(r"^```\n(.*?)^```", re.M | re.S).search(text, start)
    assert m, f"no code block after {heading!r} in {doc.name}"
    return m.group(1).splitlines()


def _named(lines: list[str], base: str, indent_base: dict[int, str]) -> set[str]:
    """Paths named in a layout block: the column before the description, relative to the directory
    line above it for indented entries; wrapped description lines (deeper indent) are skipped."""
    names, bases = set(), dict(indent_base)
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if not line.strip() or indent not in bases:
            continue
        column = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        for name in column.split(", "):
            names.add((bases[indent] + name).rstrip("/"))
        if column.endswith("/") and indent > 0:  # a folder: its entries are indented under it
            bases[indent + 2] = bases[indent] + column
    return names


def test_code_map_names_every_module_of_mediaproxy():
    lines = _block_after(ROOT / "docs" / "design.md", "## Code map")
    named = _named(lines, "", {0: "", 2: "mediaproxy/"})
    missing = [n for n in sorted(named) if not (ROOT / n).exists()]
    assert not missing, f"docs/design.md's code map names what does not exist: {missing}"
    present = {f"mediaproxy/{p.name}" for p in (ROOT / "mediaproxy").iterdir()
               if (p.is_dir() and p.name != "__pycache__") or (p.suffix == ".py" and p.name != "__init__.py")}
    unnamed = sorted(present - named)
    assert not unnamed, f"docs/design.md's code map does not name: {unnamed}"


def test_library_layout_names_every_module():
    lines = _block_after(ROOT / "docs" / "library.md", "# The media library")
    named = _named(lines, "", {0: "", 2: "mediaproxy/library/"})
    missing = [n for n in sorted(named) if not (ROOT / n).exists()]
    assert not missing, f"docs/library.md's layout names what does not exist: {missing}"
    lib = ROOT / "mediaproxy" / "library"
    present = {f"mediaproxy/library/{p.relative_to(lib).as_posix()}" for p in lib.rglob("*.py")
               if p.name != "__init__.py" and "migrations" not in p.relative_to(lib).parts}
    unnamed = sorted(present - named)
    assert not unnamed, f"docs/library.md's layout does not name: {unnamed}"


# A file named in the docs' text (``mediaproxy/worker.py``, ``tests/test_cache.py``, ``media/jpeg.py``,
# ``routes/cdn.FAMILIES``), relative to the repository, mediaproxy/ or mediaproxy/library/.
_FILE_NAME = re.compile(r"(?<![\w/.{-])((?:mediaproxy|tests|bench|scripts|deploy|native|docs|\.ci|routes|media|storage"
                        r"|library|openapi|data|api)/[A-Za-z0-9_./-]*[A-Za-z0-9_])(?![\w{*-]|/\w)")
_CREATED_AT_RUN_TIME = ("bench/.venv-", "bench/.ipx")  # the benchmarks' own installs of their peers


def _names_a_file(name: str) -> bool:
    for base in (ROOT, ROOT / "mediaproxy", ROOT / "mediaproxy" / "library"):
        if (base / name).exists():
            return True
        module, _, attribute = name.rpartition(".")  # routes/cdn.FAMILIES: a name in routes/cdn.py
        if attribute and (base / f"{module}.py").exists():
            return True
    return False


def test_every_file_the_docs_name_exists():
    problems = []
    named = 0
    for doc in DOCS:
        for i, line in enumerate(doc.read_text().splitlines(), 1):
            for name in _FILE_NAME.findall(line):
                if name.startswith(_CREATED_AT_RUN_TIME):
                    continue
                named += 1
                if not _names_a_file(name):
                    problems.append(f"{doc.relative_to(ROOT)}:{i}: {name}")
    assert named > 100  # the pattern still finds them
    assert not problems, "the docs name files that do not exist:\n" + "\n".join(problems)
