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

html_theme = "alabaster"
html_static_path = []
html_title = f"numpyro-dilation {release}"
