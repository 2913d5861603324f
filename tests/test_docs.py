"""Every code snippet in the README, the docs and the docstrings runs."""

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import numpyro_dilation

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(page: Path) -> list[str]:
    return FENCE.findall(page.read_text())


@pytest.mark.integration
@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_page_snippets_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snippets that write files write them here
    namespace = {"__name__": "__snippet__"}
    for block in python_blocks(page):
        exec(compile(block, f"{page.name}:snippet", "exec"), namespace)


MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(numpyro_dilation.__path__, "numpyro_dilation.")
    if not name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.integration
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert failures == 0
