"""The direction of imports (docs/architecture.md): no cycle among analysis's modules, and analysis
imports nothing from scaling; no cycle among scaling's modules, and scaling's layers import only
downwards. Every import counts, including those inside functions; importing `a.b.c` from outside
the package `a.b` also runs `a.b`'s __init__, so it counts as importing `a.b`.

Run alone: python -m pytest -q tests/test_imports.py (prints the cycle or the import it refuses).
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The absolute names of the modules `path` imports (for `from X import y`: X.y if that is a
    module of the repository, else X)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if _is_module(candidate) else base)
    return found


def _is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of `package` it imports (with the parent packages that run)."""
    modules = {module_name(p): p for p in (REPO / package).rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        own_package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for target in imports_of(path):
            if target.split(".")[0] != package:
                continue
            targets.add(target)
            parts = target.split(".")
            for i in range(1, len(parts)):   # parents whose __init__ runs, unless we are inside them
                parent = ".".join(parts[:i])
                if not (own_package == parent or own_package.startswith(parent + ".")):
                    targets.add(parent)
        edges[name] = {t for t in targets if t in modules and t != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_analysis_has_no_import_cycle():
    assert cycles(graph("analysis")) == []


def test_analysis_imports_nothing_from_scaling():
    offending = {module_name(p): sorted(t for t in imports_of(p) if t.split(".")[0] == "scaling")
                 for p in (REPO / "analysis").rglob("*.py")}
    assert {name: found for name, found in offending.items() if found} == {}


# scaling's layers, bottom to top (docs/architecture.md): a module imports from its own layer and the
# layers below it only. A module is in the layer of the longest prefix listed.
SCALING_LAYERS = (
    ("foundations", ("scaling", "scaling.configuration", "scaling.model", "scaling.accounting",
                     "scaling.partitioning", "scaling.timings", "scaling.checkpoints", "scaling.presets",
                     "scaling.data", "scaling.mfu", "scaling.schedules", "scaling.optimizer", "scaling.step",
                     "scaling.prefetch", "scaling.run_folder", "scaling.train_config", "scaling.infer_config")),
    ("runs", ("scaling.trainer", "scaling.train", "scaling.decode", "scaling.infer_rows", "scaling.infer")),
    ("sweep", ("scaling.sweep",)),
    ("commands", ("scaling.cli", "scaling.describe", "scaling.demo")),
)


def layer_of(module: str) -> int:
    """The index in SCALING_LAYERS of `module`'s layer (by its longest listed prefix)."""
    best, best_length = None, -1
    for index, (_, prefixes) in enumerate(SCALING_LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    assert best is not None, f"{module} is in no layer of SCALING_LAYERS: add it there and to docs/architecture.md"
    return best


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    """'a (layer) -> b (layer)' for every import of a higher layer."""
    return sorted(f"{a} ({SCALING_LAYERS[layer_of(a)][0]}) -> {b} ({SCALING_LAYERS[layer_of(b)][0]})"
                  for a, targets in edges.items() for b in targets if layer_of(b) > layer_of(a))


def test_scaling_has_no_import_cycle():
    assert cycles(graph("scaling")) == []


def test_scaling_imports_only_downwards():
    assert upward_imports(graph("scaling")) == []


def test_the_checker_finds_a_cycle_and_a_parent_package_import():
    edges = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a.w": {"a.x"}}
    assert cycles(edges) == [["a.x", "a.y", "a.z"]]
    # analysis.fitting imports analysis.forms.base, which runs analysis/forms/__init__.py
    assert "analysis.forms" in graph("analysis")["analysis.fitting"]
    assert upward_imports({"scaling.model": {"scaling.train"}, "scaling.sweep.grid": {"scaling.model"}}) == [
        "scaling.model (foundations) -> scaling.train (runs)"]


# The form registry (analysis/forms/registry.py) imports nothing; the forms package's __init__
# imports every built-in form with plain import statements, so the graph above sees the registry's
# loads (no pkgutil or importlib load hides an edge), and the cycle check covers them.

def dynamic_imports() -> list[str]:
    """Modules of analysis that import by name at run time, which the graph cannot follow (the
    lazy public names of analysis/__init__.py and analysis/report/__init__.py are followed by the
    test below)."""
    found = []
    lazy = (REPO / "analysis" / "__init__.py", REPO / "analysis" / "report" / "__init__.py")
    for path in (REPO / "analysis").rglob("*.py"):
        text = path.read_text()
        if path not in lazy and any(word in text for word in ("importlib", "pkgutil", "__import__(")):
            found.append(module_name(path))
    return sorted(found)


def test_the_registry_loads_are_imports_the_graph_follows():
    edges = graph("analysis")
    assert dynamic_imports() == []
    assert edges["analysis.forms.registry"] == set()
    form_modules = {module_name(p) for p in (REPO / "analysis" / "forms").glob("*.py")
                    if p.stem not in ("__init__", "base", "registry")}
    assert form_modules <= edges["analysis.forms"], sorted(form_modules - edges["analysis.forms"])


def test_the_public_names_import_no_loop():
    # analysis/__init__.py and analysis/report/__init__.py import their public names by module
    # name on first use (the report package also its own modules, which the graph holds): follow those too
    import analysis
    import analysis.report
    edges = graph("analysis")
    edges["analysis"] = set(analysis._PUBLIC.values())
    edges["analysis.report"] = set(analysis.report._PUBLIC.values())
    assert cycles(edges) == []


def test_any_first_import_of_analysis_sees_every_form():
    # in one process, with analysis's modules unloaded: whichever module is imported first (a form,
    # an estimator, the law, the fitter), the registry then holds every built-in form
    import importlib
    import sys
    entries = ("analysis.law", "analysis.forms.joint_inference", "analysis.forms.registry", "analysis.two_step",
               "analysis.isoflop", "analysis.estimates", "analysis.fitting", "analysis.questions", "analysis.cli")
    saved = {name: module for name, module in sys.modules.items() if name == "analysis" or name.startswith("analysis.")}
    forms = sorted(importlib.import_module("analysis.forms").FORMS)
    try:
        seen = {}
        for entry in entries:
            for name in [n for n in sys.modules if n == "analysis" or n.startswith("analysis.")]:
                del sys.modules[name]
            importlib.import_module(entry)
            seen[entry] = sorted(importlib.import_module("analysis.forms").FORMS)
    finally:
        for name in [n for n in sys.modules if n == "analysis" or n.startswith("analysis.")]:
            del sys.modules[name]
        sys.modules.update(saved)
    assert seen == {entry: forms for entry in entries}
