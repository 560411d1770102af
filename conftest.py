"""Doctests under jaxheads/ get the JAX set-up of tests/conftest.py (8 fake CPU
devices, strict promotion) even when collected on their own (`pytest jaxheads`)."""

import pathlib
import runpy

runpy.run_path(str(pathlib.Path(__file__).parent / "tests" / "conftest.py"))
