"""Each script in examples/ runs as a user would run it, in a fresh process, and does what its
docstring says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_every_example_has_a_test() -> None:
    tested = {
        "own_arrays.py",
        "custom_algorithm.py",
        "reading_runs.py",
        "flower_simulation.py",
        "image_folders.py",
    }
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


@pytest.mark.slow
def test_own_arrays_learns() -> None:
    out = run_example("own_arrays.py").strip().splitlines()[-1]
    mean = float(out.rsplit(" ", 1)[1])
    assert mean > 0.8, out


@pytest.mark.slow
def test_custom_algorithm_adds_its_loss_term() -> None:
    out = run_example("custom_algorithm.py")
    assert "'feature_decay'" in out
    mean = float(out.strip().splitlines()[-1].split(":")[1])
    assert mean > 0.6, out


@pytest.mark.slow
def test_reading_runs_shows_every_round_and_domain(tmp_path: Path) -> None:
    out = run_example("reading_runs.py")
    assert "4 rounds" in out
    assert "per_domain_accuracy.a" in out and "per_domain_accuracy.b" in out
    table = out.split("rounds\n", 1)[1].splitlines()
    assert [line.split()[0] for line in table[2:6]] == ["1", "2", "3", "4"]


@pytest.mark.slow
def test_image_folders_trains_on_two_domains_and_scores_the_third(tmp_path: Path) -> None:
    out = run_example("image_folders.py", str(tmp_path / "domains"))
    assert {p.name for p in (tmp_path / "domains").iterdir()} == {
        "clinic_a",
        "clinic_b",
        "clinic_c",
    }
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["holdout_domains"] == ["clinic_c"]
    held_out = out.split("held-out domain:")[1]
    assert "clinic_c" in held_out
    assert "'clinic_c'" not in out.split("held-out domain:")[0]  # no client of clinic_c


@pytest.mark.slow
@pytest.mark.flower_e2e
def test_flower_simulation_writes_a_run_folder(tmp_path: Path) -> None:
    pytest.importorskip("flwr")
    out = tmp_path / "fpl-flower"
    run_example("flower_simulation.py", str(out))
    rounds = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["round"] for r in rounds] == [1, 2]
    assert set(json.loads((out / "summary.json").read_text())["per_domain_accuracy"]) == {
        "handwritten",
        "synthetic",
    }


def test_the_readme_snippet_is_the_example() -> None:
    """The README shows lines of examples/own_arrays.py; each must be there, so the two
    cannot drift apart."""
    readme = (ROOT / "README.md").read_text()
    snippet = readme.split("```python\n", 1)[1].split("```", 1)[0]
    example = (EXAMPLES / "own_arrays.py").read_text()
    for line in snippet.strip().splitlines():
        if line.strip():
            assert line.strip() in example, f"README line not in the example: {line}"
