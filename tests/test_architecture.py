"""The import rule of docs/architecture.md, held: layers, no cycle, imports inside functions only
for optional dependencies."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "t2t"
# what a function may import where the module does not: optional extras, and torch parts that
# only distributed or quantized runs need
LAZY_ALLOWED = {"fastapi", "uvicorn", "pydantic", "starlette", "ctranslate2", "matplotlib", "argcomplete", "pyarrow",
                "torch.distributed", "torch.nn.parallel", "torch.ao", "t2t.serve"}


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def layers() -> dict[str, int]:
    """module pattern -> layer, from the table of docs/architecture.md."""
    table = {}
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for number, cells in re.findall(r"^\| (\d) [a-z ]+\| (.+) \|$", text, re.M):
        for name in re.findall(r"`([\w.*]+)`", cells):
            table["t2t" if name == "t2t" else f"t2t.{name}"] = int(number)
    return table


def layer_of(module: str, table: dict[str, int]) -> int | None:
    for pattern, number in table.items():
        if module == pattern or (pattern.endswith(".*") and module.startswith(pattern[:-1])) \
                or (pattern.endswith(".*") and module == pattern[:-2]):
            return number
    return None


def imports(mods: dict[str, Path]) -> list[tuple[str, str, bool]]:
    """(importer, imported, inside a function) for every import in the package; TYPE_CHECKING
    blocks left out. Imported t2t names resolve to their module."""
    found = []

    def visit(node, mod, package, local):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.dump(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend((mod, a.name, local) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(up + ([child.module] if child.module else []))
                for a in child.names:
                    full = f"{base}.{a.name}"
                    found.append((mod, full if full in mods else base, local))
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, mod, package, inner)

    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        visit(ast.parse(path.read_text(encoding="utf-8")), mod, package, False)
    return found


def internal(name: str, mods) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def test_every_module_has_a_layer_and_imports_only_its_own_or_lower():
    mods, table = modules(), layers()
    assert table, "docs/architecture.md has lost its layer table"
    missing = sorted(m for m in mods if layer_of(m, table) is None)
    assert not missing, f"modules with no layer in docs/architecture.md: {missing}"
    upward = []
    for src, name, _ in imports(mods):
        dst = internal(name, mods)
        if dst and dst != src and layer_of(dst, table) > layer_of(src, table):
            upward.append(f"{src} (layer {layer_of(src, table)}) imports {dst} (layer {layer_of(dst, table)})")
    assert not upward, upward


def test_no_import_cycle_even_through_imports_inside_functions():
    mods = modules()
    graph = {m: set() for m in mods}
    for src, name, _ in imports(mods):
        dst = internal(name, mods)
        if dst and dst != src and dst != "t2t":     # every module's package __init__ runs first anyway
            graph[src].add(dst)
    state, path, cycles = {}, [], []

    def walk(m):
        state[m] = "open"
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                cycles.append(path[path.index(n):] + [n])
            elif n not in state:
                walk(n)
        path.pop()
        state[m] = "done"
    for m in sorted(graph):
        if m not in state:
            walk(m)
    assert not cycles, [" -> ".join(c) for c in cycles]


def test_imports_inside_functions_are_only_for_optional_dependencies():
    mods = modules()
    lazy = sorted({(src, name) for src, name, local in imports(mods) if local
                   and not any(name == a or name.startswith(a + ".") for a in LAZY_ALLOWED)})
    assert not lazy, lazy
