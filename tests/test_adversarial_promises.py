"""The README's "Promises" section cites tests by name: every cited test must exist."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _promises_section():
    text = (ROOT / "README.md").read_text()
    start = text.index("### Promises")
    end = text.index("\n## ", start)
    return text[start:end]


def test_every_test_the_promises_cite_exists():
    section = _promises_section()
    names = set(re.findall(r"`(?:tests/[\w./]+::)?(test_\w+)`", section))
    files = set(re.findall(r"`(tests/test_\w+\.py)", section))
    assert len(names) >= 20 and files
    defined = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        defined |= set(re.findall(r"^def (test_\w+)", path.read_text(), re.M))
    assert names <= defined, sorted(names - defined)
    for name in files:
        assert (ROOT / name).exists(), name
