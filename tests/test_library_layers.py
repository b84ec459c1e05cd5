"""The library's layering, read from its import graph (docs/library.md § the layers): no import
cycles, no import of another library module hidden inside a function, no private name taken from
another module, no SQL in the HTTP dialects or the services, no HTTP in the services, and a
transaction committed in one place."""

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


# A database transaction is committed in unit.py alone: the request's unit of work, the job's, and
# a unit of its own where a step must be seen by others first or outlive a refused request.
COMMITS_ALLOWED = {"mediaproxy.library.unit"}
WRITERS = {"writer", "w", "self.writer"}  # storage writers commit their bytes, not a transaction


def test_a_transaction_is_committed_in_one_place():
    for m, p in _modules().items():
        if not (m.startswith("mediaproxy.library") or m.startswith("mediaproxy.portal")) or m in COMMITS_ALLOWED:
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("commit", "rollback")):
                owner = ast.unparse(node.func.value)
                if owner == "unit" or (m == "mediaproxy.library.db" and owner == "dbapi_conn"):
                    continue  # the unit of work's own functions; a connection's set-up, before any session
                assert owner in WRITERS and node.func.attr == "commit", \
                    f"{m}:{node.lineno} calls {owner}.{node.func.attr}(): only unit.py ends a transaction"


def test_services_know_no_http_and_take_no_dialect():
    for p in (ROOT / "library" / "services").glob("*.py"):
        name = f"mediaproxy.library.services.{p.stem}"
        for node, module, _, _ in _imports(name, p):
            http = ("falcon", "mediaproxy.library.api", "mediaproxy.routes", "mediaproxy.http")
            assert not module.startswith(http), f"services/{p.name}:{node.lineno} imports {module}"


def test_the_services_hold_no_query():
    """Every SELECT, UPDATE and DELETE of the services is a repository's; a service adds records
    (the ORM's ``add``) and changes the ones it holds."""
    for p in (ROOT / "library" / "services").glob("*.py"):
        name = f"mediaproxy.library.services.{p.stem}"
        for node, module, names, _ in _imports(name, p):
            if module == "sqlalchemy":
                assert not {"select", "update", "delete", "func", "or_", "text"} & set(names), \
                    f"services/{p.name}:{node.lineno} builds a query ({names})"
