#!/usr/bin/env bash
# Builds the API reference with every warning an error, then runs its examples
# (the `>>>` blocks of the docstrings and of the pages) as doctests.
# Needs the docs extra: pip install -e ".[docs]"
set -euo pipefail
cd "$(dirname "$0")"
python -m sphinx -W --keep-going -q -b html . _build/html
python -m sphinx -W --keep-going -q -b doctest . _build/doctest
echo "docs: built in docs/_build/html; doctests passed"
