"""Sphinx configuration for the numpyro-dilation documentation."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from numpyro_dilation import __version__  # noqa: E402

project = "numpyro-dilation"
author = "numpyro-dilation developers"
copyright = "2026, numpyro-dilation developers"
release = __version__
version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx.ext.intersphinx",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
# Generated tables under comparison/ and figures/ are pulled into pages with {include}.
exclude_patterns = ["_build", "comparison/*.md", "figures/*.md"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_type_aliases = {"ArrayLike": "ArrayLike", "Schedule": "Schedule"}
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True

# Offline builds: no inventories are fetched; references to NumPyro and JAX stay plain text.
intersphinx_mapping = {}

# ArviZ's theme, laid out for a flat site: the pages are linked from the header
# (short titles come from the toctree in index.md), so the left sidebar, which
# would only repeat them, is dropped and the article column gets its width;
# the right sidebar keeps the page's contents.  _static/custom.css sets tables
# in a smaller font that wraps between words, and _static/table-breaks.js lets
# snake_case and mu0<mu1<mu2 column names wrap too, so that the generated
# benchmark and comparison tables (up to ten columns) fit at 1280 px.
html_theme = "pydata_sphinx_theme"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_js_files = ["table-breaks.js"]
html_title = f"numpyro-dilation {release}"
html_theme_options = {
    "navbar_align": "left",
    "header_links_before_dropdown": 6,
    # The search field would not fit beside six links at 1280 px: an icon instead.
    "navbar_persistent": [],
    "navbar_end": ["search-button", "theme-switcher"],
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
html_sidebars = {"**": []}
