"""The house rules. Sizes: no module over 400 lines, no function over 60 lines or 8 parameters (self
and cls not counted), so each stays readable in one sitting. Imports: no import cycle between modules or
between packages, and the scoring side (``evaluators``) never imports the search side (``optimizer``). Every import statement counts,
those inside functions and under ``TYPE_CHECKING`` too: a lazy import hides a cycle, it does not
remove it. Importing a submodule runs its package's ``__init__`` first; that implicit step is not an
edge, an explicit ``from package import name`` of something the ``__init__`` defines is.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("evaluators", "optimizer", "toy")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    here = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
    base = here[: len(here) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _target(name: str) -> str | None:
    """The project module ``name`` refers to: itself, or the package defining it (``pkg.attr``);
    None outside the project or for a compiled extension (``evaluators.merge._fused``)."""
    parent, _, leaf = name.rpartition(".")
    if name not in MODULES and parent in MODULES and any(MODULES[parent].parent.glob(f"{leaf}.c")):
        return None  # its C source sits beside it (the built .so may not exist yet)
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


BY_NAME = ("provided_by", "import_module", "__import__")  # calls whose string argument names a module


def _call_name(node: ast.Call) -> str | None:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(module, node)
                names = [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Call) and _call_name(node) in BY_NAME:
                # an import by name: BACKENDS.provided_by("hf", "evaluators.backends.hf"), import_module("...")
                names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            else:
                continue
            edges[module] |= {t for t in map(_target, names) if t is not None and t != module}
    return edges


def _package(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while (top := stack.pop()) != node:
                component.append(top)
            if component:
                found.append(sorted([*component, node]))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_sees_imports_inside_functions_and_extensions() -> None:
    """Guard: the graph holds a known lazy import and leaves the compiled kernel out."""
    edges = _edges()
    assert "optimizer.search.driver" in edges["optimizer.cli.commands"]  # imported inside _resume/_join only
    assert "evaluators.merge" not in edges["evaluators.merge.kernel"]  # from evaluators.merge import _fused
    assert "evaluators.backends.hf" in edges["evaluators.backends"]  # BACKENDS.provided_by("hf", "...hf")
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_no_module_imports_itself_back() -> None:
    assert _cycles(_edges()) == []


def test_no_package_imports_itself_back() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in _edges().items():
        a = _package(module)
        packages.setdefault(a, set())
        for b in map(_package, targets):
            if b != a and not b.startswith(a + "."):  # a package may use its own subpackages
                packages[a].add(b)
    assert _cycles(packages) == []


def test_the_scoring_side_and_the_toy_never_import_the_search_side() -> None:
    edges = _edges()
    wrong = {
        m: sorted(t for t in edges[m] if t.startswith("optimizer")) for m in edges if not m.startswith("optimizer")
    }
    assert {m: t for m, t in wrong.items() if t} == {}


# the data path, in the order the folders name it (each package's __init__ says the same in words): a
# package may import those before it, never one after it
LAYERS = (
    "evaluators.core",
    "evaluators.pool",
    "evaluators.merge",
    "evaluators.scoring",
    "evaluators.backends",
    "evaluators.worker",
    "optimizer.store",
    "optimizer.space",
    "optimizer.sampler",
    "optimizer.experiment",
    "optimizer.run",
    "optimizer.search",
    "optimizer.front",
    "optimizer.export",
    "optimizer.cli",
)


def _layer(module: str) -> int | None:
    return next((i for i, layer in enumerate(LAYERS) if module == layer or module.startswith(layer + ".")), None)


def test_every_package_has_its_place_on_the_data_path() -> None:
    packages = {_package(m) for m in MODULES if m.count(".") >= 1 and not m.startswith("toy")}
    assert sorted(p for p in packages if _layer(p) is None and p not in PACKAGES) == []


def test_packages_import_along_the_data_path() -> None:
    wrong = []
    for module, targets in _edges().items():
        if (here := _layer(module)) is not None:
            wrong += [f"{module} -> {t}" for t in sorted(targets) if (_layer(t) or 0) > here]
    assert wrong == []


MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_PARAMETERS = 400, 60, 8


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = node.args
    names = [*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, (a.vararg, a.kwarg))]
    return len([n for n in names if n.arg not in ("self", "cls")])


# the scripts beside the packages keep the same sizes (they are read as often)
SCRIPTS = {
    str(p.relative_to(ROOT)): p for d in ("bench", "experiments/replications") for p in sorted((ROOT / d).glob("*.py"))
}


def test_modules_and_functions_stay_small() -> None:
    too_big = []
    for module, path in {**MODULES, **SCRIPTS}.items():
        text = path.read_text()
        if (lines := len(text.splitlines())) > MAX_MODULE_LINES:
            too_big.append(f"{module}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES or _parameters(node) > MAX_PARAMETERS:
                    too_big.append(f"{module}.{node.name}: {length} lines, {_parameters(node)} parameters")
    assert too_big == []
