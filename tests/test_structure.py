"""The package's shape: a light top-level import, no import cycle, no private names of others.

The checks read the source with :mod:`ast` rather than importing it, so that an
import inside a function counts like any other: a cycle closed only when some
function runs is still a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT

PACKAGE = "numpyro_dilation"
#: Heavy dependencies of the workflow tools that ``import numpyro_dilation`` must not load.
HEAVY = ("pandas", "xarray", "matplotlib", "arviz")
#: Libraries whose private names (``_x``) the package and the benchmarks must not use.
OTHERS = ("numpyro", "jax", "arviz", "blackjax")


def module_files(folder: Path, prefix: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under ``folder``."""
    out = {}
    for path in sorted(folder.rglob("*.py")):
        parts = [prefix, *path.relative_to(folder).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = module_files(ROOT / PACKAGE, PACKAGE)


def imported_modules(name: str, path: Path, known) -> set[str]:
    """Modules of ``known`` that module ``name`` imports anywhere (module or function level).

    ``from a import b`` counts as importing ``a.b`` when that is a module, else
    ``a``.  ``importlib.import_module`` with a literal name counts too; with a
    computed name inside a package, as importing every module of that package.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
        ):
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value)
            else:
                found.update(m for m in known if m.startswith(package + "."))
    return {m for m in found if m in known and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def private_uses(path: Path, root: Path = ROOT) -> list[str]:
    """``module: name`` for each private name of :data:`OTHERS` that ``path`` uses
    (``path`` shown relative to ``root``).

    Private: a component that starts with one underscore (``_x``, not ``__x__``),
    in an imported module path, an imported name, or an attribute read from an
    imported module (``numpyro.infer.mcmc._x``).
    """

    def private(part: str) -> bool:
        return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))

    tree = ast.parse(path.read_text(), str(path))
    aliases: dict[str, str] = {}  # local name -> module of OTHERS it is bound to
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in OTHERS:
                    if any(private(p) for p in alias.name.split(".")):
                        uses.append(alias.name)
                    local = alias.asname or alias.name.split(".")[0]
                    aliases[local] = alias.name if alias.asname else local
        elif (
            isinstance(node, ast.ImportFrom)
            and not node.level
            and (node.module or "").split(".")[0] in OTHERS
        ):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if any(private(p) for p in full.split(".")):
                    uses.append(full)
                aliases[alias.asname or alias.name] = full
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            chain, inner = [node.attr], node.value
            while isinstance(inner, ast.Attribute):
                chain.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name) and inner.id in aliases:
                uses.append(".".join([aliases[inner.id], *reversed(chain)]))
    return [f"{path.relative_to(root)}: {use}" for use in sorted(set(uses))]


def test_import_is_light():
    """``import numpyro_dilation`` loads none of the workflow's heavy dependencies."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {PACKAGE}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    # lines read "import time: self | cumulative | <indent>dotted.name"
    loaded = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    assert "jax" in loaded  # the parse found the imports
    assert sorted(loaded.intersection(HEAVY)) == []


def test_lazy_names_still_resolve():
    """The workflow names of the top-level package are there once asked for."""
    code = (
        f"import sys, {PACKAGE} as p; assert 'pandas' not in sys.modules;"
        " from numpyro_dilation import compare, Comparison, to_inference_data, WarmupDraws;"
        " from numpyro_dilation import extra_fields_for, DILATION_EXTRA_FIELDS, HMC_EXTRA_FIELDS;"
        " from numpyro_dilation.workflow.comparison import compare as c; assert compare is c;"
        " assert set(p.__all__) <= set(dir(p))"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_no_import_cycle():
    graph = {name: imported_modules(name, path, MODULES) for name, path in MODULES.items()}
    assert graph[f"{PACKAGE}.workflow.comparison"]  # the parse found the package's imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_find_cycle_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_private_names_of_other_libraries():
    files = [*MODULES.values(), *sorted((ROOT / "benchmarks").glob("*.py"))]
    offenders = [use for path in files for use in private_uses(path)]
    assert offenders == []


def test_private_uses_sees_each_form(tmp_path):
    path = tmp_path / "private_probe.py"
    path.write_text(
        "import jax._src.core\n"
        "from numpyro.infer.hmc_util import _value_and_grad\n"
        "import numpyro.infer.mcmc as m\n"
        "import jax\n"
        "x = m._collection_params\n"
        "y = jax.tree.map, jax.__version__\n"
        "from numpyro_dilation import _checks\n"
    )
    uses = [u.split(": ", 1)[1] for u in private_uses(path, root=tmp_path)]
    assert uses == [
        "jax._src.core",
        "numpyro.infer.hmc_util._value_and_grad",
        "numpyro.infer.mcmc._collection_params",
    ]


def test_every_module_declares_all():
    def assigned(path: Path) -> set[str]:
        return {
            target.id
            for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name)
        }

    scripts = (f"{PACKAGE}.__main__",)
    missing = [n for n, p in MODULES.items() if n not in scripts and "__all__" not in assigned(p)]
    assert missing == []
