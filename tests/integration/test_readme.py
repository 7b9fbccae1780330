"""The README's Python example runs as written, and its commands name real things."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_python_example_runs_and_learns(capsys: pytest.CaptureFixture[str]) -> None:
    (example,) = python_blocks()
    namespace: dict[str, object] = {}
    exec(compile(example, "README.md", "exec"), namespace)
    result = namespace["result"]
    mean = result.summary["mean_accuracy"]  # type: ignore[attr-defined]
    assert mean > 0.8, f"the README example should learn; mean accuracy {mean}"
    assert "mean" not in capsys.readouterr().err


def test_quickstart_commands_exist() -> None:
    text = README.read_text()
    assert "bash scripts/setup && .venv/bin/protofl run" in text
    assert "bash scripts/test" in text
    root = README.parent
    assert (root / "scripts" / "setup").is_file() and (root / "scripts" / "test").is_file()
    assert "scripts/test" in (root / ".ci" / "run").read_text()
