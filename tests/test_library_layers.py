"""The library's layering, read from its import graph (docs/library.md § the layers): no import
cycles, no import of another library module hidden inside a function, no private name taken from
another module, and no SQL in the HTTP dialects."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "mediaproxy"


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        if "migrations" in p.parts:
            continue
        parts = p.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _imports(name: str, path: Path) -> list[tuple[ast.AST, str, list[str], bool]]:
    """(node, module imported, names, at module level) of every import of ``name``."""
    tree = ast.parse(path.read_text())
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out.append((node, a.name, [], id(node) in top))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((node, module, [a.name for a in node.names], id(node) in top))
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for _, module, names, at_top in _imports(m, p):
            if not at_top:
                continue
            for target in [module, *(f"{module}.{n}" for n in names)]:
                if target in mods and target != m:
                    graph[m].add(target)
    return graph


def test_no_import_cycle_through_the_library_or_the_app():
    graph = _graph()
    seen: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(m: str, path: list[str]) -> None:
        seen[m] = 1
        for t in sorted(graph[m]):
            if seen.get(t) == 1:
                cycle = [*path[path.index(t):], t]
                assert not any("library" in x or x == "mediaproxy.app" for x in cycle), cycle
            elif t not in seen:
                visit(t, [*path, t])
        seen[m] = 2

    for m in sorted(graph):
        if m not in seen:
            visit(m, [m])


def test_library_modules_import_each_other_at_the_top_and_by_public_names():
    mods = _modules()
    for m, p in mods.items():
        if not m.startswith("mediaproxy.library"):
            continue
        for node, module, names, at_top in _imports(m, p):
            if module.startswith("mediaproxy"):
                assert at_top, f"{m}:{node.lineno} imports {module} inside a function"
                private = [n for n in names if n.startswith("_") and n != "__future__"]
                assert not private, f"{m}:{node.lineno} takes private {private} from {module}"


def test_the_http_dialects_hold_no_sql():
    for p in (ROOT / "library" / "api").glob("*.py"):
        name = f"mediaproxy.library.api.{p.stem}"
        for node, module, _, _ in _imports(name, p):
            assert not module.startswith("sqlalchemy"), f"{p.name}:{node.lineno} imports {module}"
