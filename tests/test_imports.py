"""No import circles among the project's modules, and imports point the way the layout says
(app.py -> page -> unmasker / training -> unmasker; unmasker imports neither training nor the page).

The graph is read from the source with `ast`: every `import` / `from ... import` anywhere in a
module (inside functions too, since a lazy import still ties two modules together), resolved to
the project module it names. Nothing is imported.
"""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("unmasker", "training", "page")
SCRIPTS = ("app.py",)


def project_modules(root: str = REPO) -> dict[str, str]:
    """Dotted module name -> file, for the entry scripts and every .py file of the packages."""
    out = {os.path.splitext(s)[0]: os.path.join(root, s) for s in SCRIPTS if os.path.isfile(os.path.join(root, s))}
    for pkg in PACKAGES:
        for folder, _, files in os.walk(os.path.join(root, pkg)):
            for name in files:
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(folder, name), root)[:-3].replace(os.sep, ".")
                    out[rel.removesuffix(".__init__")] = os.path.join(folder, name)
    return out


def _resolve(name: str, modules: dict) -> str | None:
    """The project module `name` refers to: itself, or the closest enclosing package/module."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(modules: dict[str, str]) -> dict[str, set[str]]:
    """module -> the project modules it imports (self-imports dropped)."""
    graph = {}
    for mod, path in modules.items():
        package = mod if path.endswith("__init__.py") else mod.rpartition(".")[0]
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets |= {_resolve(a.name, modules) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    anchor = ".".join(parts[: len(parts) - node.level + 1])
                    base = f"{anchor}.{base}" if base else anchor
                # `from pkg import sub` imports the submodule pkg.sub when there is one
                targets |= {_resolve(f"{base}.{a.name}", modules) for a in node.names}
        graph[mod] = {t for t in targets if t and t != mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted: every
    import circle, direct (a <-> b) or a ring (a -> b -> c -> a), lies inside one of them."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_detector_finds_direct_and_ring_circles(tmp_path):
    """Hand-made packages: a direct pair through a lazy import, a ring of three, and a clean chain."""
    files = {
        "unmasker/__init__.py": "",
        "unmasker/a.py": "def f():\n    from .b import g\n",
        "unmasker/b.py": "from unmasker import a\n",
        "training/__init__.py": "",
        "training/x.py": "import training.y\n",
        "training/y.py": "from .z import q\n",
        "training/z.py": "from training import x\nfrom unmasker.a import f\n",
        "page/__init__.py": "",
        "page/v.py": "import json\nfrom unmasker import b\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    graph = import_graph(project_modules(str(tmp_path)))
    assert graph["page.v"] == {"unmasker.b"}
    assert sorted(cycles(graph)) == [["training.x", "training.y", "training.z"], ["unmasker.a", "unmasker.b"]]


def test_no_import_circles_in_the_project():
    found = cycles(import_graph(project_modules()))
    assert not found, f"import circles: {found}"


@pytest.mark.parametrize("lower, upper", [("unmasker", "training"), ("unmasker", "page"), ("unmasker", "app"),
                                          ("training", "page"), ("training", "app"), ("page", "app")])
def test_imports_point_one_way(lower, upper):
    graph = import_graph(project_modules())
    wrong = sorted(f"{m} -> {t}" for m, ts in graph.items() if m.split(".")[0] == lower
                   for t in ts if t.split(".")[0] == upper)
    assert not wrong, f"{lower} must not import {upper}: {wrong}"
