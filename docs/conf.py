"""Sphinx configuration of the jaxheads API reference (built by docs/build.sh)."""

from __future__ import annotations

import os
import pathlib
import sys

# The doctests get the test suite's JAX set-up (8 fake CPU devices, strict promotion),
# which must be in place before anything imports jax.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import jaxheads  # noqa: E402

project = "jaxheads"
author = "The jaxheads authors"
copyright = "The jaxheads authors"  # noqa: A001
release = getattr(jaxheads, "__version__", "")

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
]
exclude_patterns = ["_build", "architecture.md"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# "Attributes:" sections as fields, not a second description of each dataclass field.
napoleon_use_ivar = True
nitpicky = False
html_theme = "alabaster"
html_static_path: list[str] = []

# The `>>>` examples of the docstrings run in the test suite (pytest --doctest-modules,
# in each module's namespace); the doctest builder runs the pages' own examples.
doctest_test_doctest_blocks = ""
doctest_global_setup = """
import jax
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
import jax.numpy as jnp
import numpy as np
import jaxheads as jh
"""
