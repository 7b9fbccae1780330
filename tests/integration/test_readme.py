"""The Python example (examples/own_arrays.py, shown in the README and the docs) runs as
written, the export example in docs/usage.md runs, and the quick start names real things."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
USAGE = ROOT / "docs" / "usage.md"
EXAMPLE = ROOT / "examples" / "own_arrays.py"


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)


def test_readme_python_example_runs_and_learns(capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {}
    exec(compile(EXAMPLE.read_text(), str(EXAMPLE), "exec"), namespace)
    result = namespace["result"]
    mean = result.summary["mean_accuracy"]  # type: ignore[attr-defined]
    assert mean > 0.8, f"the README example should learn; mean accuracy {mean}"
    assert "mean" not in capsys.readouterr().err


def test_readme_python_example_gives_the_same_numbers_twice() -> None:
    """Seed 0 means the same results on every run: the model too is made under the seed,
    whatever torch's global random state was before."""
    import torch

    example = EXAMPLE.read_text()
    summaries = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)  # a user's earlier, unrelated draws
        namespace: dict[str, object] = {}
        exec(compile(example, str(EXAMPLE), "exec"), namespace)
        summaries.append(namespace["result"].summary["per_domain_accuracy"])  # type: ignore[attr-defined]
    assert summaries[0] == summaries[1]


def test_a_bad_model_factory_is_named() -> None:
    import numpy as np

    from protofl import ClientArrays, RunConfig, train_federated
    from protofl.errors import ConfigError

    x = np.zeros((8, 2), dtype=np.float32)
    clients = [ClientArrays(x, np.arange(8) % 2, domain="a")]
    with pytest.raises(ConfigError, match=r"returned int, not a torch\.nn\.Module"):
        bad_factory = lambda: 3  # noqa: E731  (a factory that returns no model, on purpose)
        train_federated(clients, {"a": (x, np.arange(8) % 2)}, bad_factory, RunConfig(rounds=1))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"torch\.nn\.Module or a class/function"):
        train_federated(clients, {"a": (x, np.arange(8) % 2)}, "Net", RunConfig(rounds=1))  # type: ignore[arg-type]


def test_quickstart_commands_exist() -> None:
    text = README.read_text()
    assert "bash scripts/setup && .venv/bin/protofl run" in text
    assert "bash scripts/test" in text
    root = README.parent
    assert (root / "scripts" / "setup").is_file() and (root / "scripts" / "test").is_file()
    assert "scripts/test" in (root / ".ci" / "run").read_text()


@pytest.mark.slow
def test_readme_export_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from protofl import RunConfig
    from protofl.api import run
    from protofl.cli import main

    one_each = {"handwritten": 1, "synthetic": 1, "strokes": 1, "segments": 1}
    config = RunConfig(rounds=1, local_epochs=1, clients_per_domain=one_each, out="run")
    monkeypatch.chdir(tmp_path)
    run(config.__class__(**{**config.to_dict(), "client_fraction": 0.1}))
    assert main(["export", "run", "--out", "exported"]) == 0
    (example,) = [block for block in python_blocks(USAGE) if "load_exported" in block]
    namespace: dict[str, object] = {}
    exec(compile(example, str(USAGE), "exec"), namespace)
    assert tuple(namespace["logits"].shape) == (8, 10)  # type: ignore[attr-defined]
