"""The product code's import picture: its floors, the imports between them, and its sizes.

``python -m tests.layout`` prints the picture docs/development.md shows; tests/test_layout.py
holds the rules to it (no circles, no import upwards or sideways, small modules and
functions).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Floors, top first: a module may import from its own wing and from lower floors only.
# Wings on one floor (ingress, scheduling) do not import each other.
FLOORS: list[tuple[str, ...]] = [
    ("deployment", "jina_serve"),
    ("encoder.batches",),
    ("encoder.http",),
    ("encoder.ingress", "encoder.scheduling"),
    ("encoder.model",),
    ("encoder",),  # the root core: errors, settings, pooling, metrics, parcels
]
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60
MAX_ROOT_MODULES = 8


@dataclass(frozen=True)
class Module:
    """One product module: its dotted name, file and the product modules it imports."""

    name: str
    path: Path
    imports: frozenset[str]

    @property
    def wing(self) -> str:
        """The wing it belongs to: the longest floor entry its name starts with."""
        entries = [w for floor in FLOORS for w in floor
                   if self.name == w or self.name.startswith(w + ".")]
        return max(entries, key=len)

    @property
    def floor(self) -> int:
        """Its floor, 0 at the top."""
        return next(i for i, floor in enumerate(FLOORS) if self.wing in floor)


def product_files(root: Path = ROOT) -> list[Path]:
    """Every Python file of the product: ``deployment.py``, ``encoder/``, ``jina_serve/``."""
    return [root / "deployment.py", *sorted((root / "encoder").rglob("*.py")),
            *sorted((root / "jina_serve").rglob("*.py"))]


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def load_modules(root: Path = ROOT) -> dict[str, Module]:
    """The product's modules and their imports of one another (at any depth of the code)."""
    files = {module_name(p, root): p for p in product_files(root)}
    modules = {}
    for name, path in files.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
        imports = frozenset(i for i in found if i in files and i != name)
        modules[name] = Module(name, path, imports)
    return modules


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        for other in modules[name].imports:
            if other not in index:
                visit(other)
                low[name] = min(low[name], low[other])
            elif other in stack:
                low[name] = min(low[name], index[other])
        if low[name] == index[name]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == name:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for name in modules:
        if name not in index:
            visit(name)
    return found


def wrong_way(modules: dict[str, Module]) -> list[str]:
    """Imports from a lower floor up to a higher one, or sideways between two wings."""
    out = []
    for module in modules.values():
        for name in sorted(module.imports):
            other = modules[name]
            if other.wing == module.wing or other.floor > module.floor:
                continue
            way = "up" if other.floor < module.floor else "sideways"
            out.append(f"{module.name} -> {name} ({way})")
    return out


def long_functions(modules: dict[str, Module]) -> list[str]:
    """Functions (methods included) longer than ``MAX_FUNCTION_LINES``."""
    out = []
    for module in modules.values():
        for node in ast.walk(ast.parse(module.path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    out.append(f"{module.name}.{node.name}: {lines} lines")
    return out


def sizes(modules: dict[str, Module]) -> dict[str, int]:
    """Lines per module."""
    return {m.name: len(m.path.read_text().splitlines()) for m in modules.values()}


def root_modules(root: Path = ROOT) -> list[str]:
    """The modules at encoder/'s top level (besides ``__init__`` and the wings)."""
    return sorted(p.stem for p in (root / "encoder").glob("*.py") if p.stem != "__init__")


def picture(modules: dict[str, Module]) -> str:
    """The floors, top first, each wing with its modules and the wings it imports."""
    by_wing: dict[str, list[str]] = defaultdict(list)
    uses: dict[str, set[str]] = defaultdict(set)
    for module in modules.values():
        by_wing[module.wing].append(module.path.stem)
        uses[module.wing].update(modules[i].wing for i in module.imports
                                 if modules[i].wing != module.wing)
    lines = []
    for number, floor in enumerate(FLOORS):
        for wing in floor:
            members = ", ".join(sorted(by_wing[wing]))
            below = ", ".join(sorted(uses[wing])) or "nothing"
            lines.append(f"floor {len(FLOORS) - number}  {wing}: {members}\n"
                         f"          imports: {below}")
    return "\n".join(lines)


def main() -> None:
    modules = load_modules()
    print(picture(modules))
    longest = max(sizes(modules).items(), key=lambda kv: kv[1])
    print(f"\n{len(modules)} modules; circles: {len(cycles(modules))}; wrong-way imports: "
          f"{len(wrong_way(modules))}; encoder/ root modules: {len(root_modules())}; "
          f"longest module: {longest[0]} ({longest[1]} lines); functions over "
          f"{MAX_FUNCTION_LINES} lines: {len(long_functions(modules))}")


if __name__ == "__main__":
    main()
