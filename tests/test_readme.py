"""The README cannot drift: every ```python block runs as written, and its test command is CI's.

Each block runs on its own, in a fresh namespace, as a reader who copies that one
block would run it (so blocks stay self-contained, and the tests can run on any
xdist worker in any order). A block that should not run must not be fenced as
``python``. The test id names the block's first line in README.md.
"""

from __future__ import annotations

import pathlib
import re
import shlex
import sys
import types

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

_FENCE = re.compile(r"^```(\S*)\s*$")


def code_blocks(text: str) -> list[tuple[str, int, str]]:
    """``(language, first line number, source)`` of every fenced block, in order.

    Raises:
      ValueError: on a fence that is never closed (naming its line).
    """
    blocks = []
    lang, start, lines = None, 0, []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _FENCE.match(line)
        if lang is None:
            if match:
                lang, start, lines = match.group(1), number + 1, []
        elif match and not match.group(1):
            blocks.append((lang, start, "\n".join(lines) + "\n"))
            lang = None
        else:
            lines.append(line)
    if lang is not None:
        raise ValueError(
            f"README.md: the ```{lang} fence opened at line {start - 1} is never closed"
        )
    return blocks


PYTHON_BLOCKS = [
    (start, src) for lang, start, src in code_blocks(README.read_text()) if lang == "python"
]


def test_code_blocks_parser():
    text = "a\n```python\nx = 1\n```\n```bash\nls\n```\n```python\ny = 2\nz = 3\n```\n"
    assert code_blocks(text) == [
        ("python", 3, "x = 1\n"),
        ("bash", 6, "ls\n"),
        ("python", 9, "y = 2\nz = 3\n"),
    ]
    with pytest.raises(ValueError, match="opened at line 1 is never closed"):
        code_blocks("```python\nx = 1\n")


def test_readme_has_python_blocks():
    assert len(PYTHON_BLOCKS) >= 3


@pytest.mark.parametrize(
    "start, source", PYTHON_BLOCKS, ids=[f"README.md:{start}" for start, _ in PYTHON_BLOCKS]
)
def test_python_block_runs(start, source, monkeypatch):
    # A real module (dataclasses, pickling and flax look classes up in sys.modules).
    module = types.ModuleType(f"readme_{start}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(source, f"README.md:{start}", "exec"), module.__dict__)  # noqa: S102


def _setup_commands() -> list[str]:
    lang, _, first = code_blocks(README.read_text())[0]
    assert lang == "bash", "README.md must open with the set-up commands (a ```bash block)"
    return [line for line in first.splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_the_two_setup_commands():
    example, tests = _setup_commands()
    script = example.split("&&")[-1].split()
    assert script[0] == "python" and (ROOT / script[1]).is_file(), example
    assert ".[test]" in tests and "pytest" in tests, tests


def test_ci_runs_exactly_the_readme_test_command():
    command = _setup_commands()[1].split("&&")[-1].strip()
    assert shlex.split(command)[:3] == ["python", "-m", "pytest"], command
    assert "-n" in shlex.split(command), f"{command!r}: the suite runs on parallel workers"
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in [line.strip() for line in ci], f"{command!r} is not a line of .ci/run"
