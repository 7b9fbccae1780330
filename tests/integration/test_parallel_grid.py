"""benchmarks/parallel_grid.py: a grid as parallel `protofl compare` processes, stopped at a
deadline with its runs resumable."""

from __future__ import annotations

import importlib.util
import json
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--", "--rounds", "2", "--local-epochs", "1", "--set", "threads=1"]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "parallel_grid", ROOT / "benchmarks" / "parallel_grid.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_two_runs_in_parallel_finish_and_are_reported_and_archived(tmp_path: Path) -> None:
    grid = load_script()
    out, packed = tmp_path / "out", tmp_path / "grid.tgz"
    argv = ["--algorithms", "fedavg,fpl", "--seeds", "0", "--jobs", "2", "--out", str(out)]
    assert grid.main([*argv, "--archive", str(packed), *TINY]) == 0
    record = json.loads((out / "parallel_runs.json").read_text())
    assert [(r["algorithm"], r["status"], r["rounds_done"]) for r in record["runs"]] == [
        ("fedavg", "finished", 2),
        ("fpl", "finished", 2),
    ]
    summary = json.loads((out / "runs" / "fpl-seed0" / "summary.json").read_text())
    last = json.loads((out / "runs" / "fpl-seed0" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["runs"][1]["last_avg"] == pytest.approx(100 * last["mean_accuracy"])
    assert summary["rounds"] == 2
    assert json.loads((out / "results.json").read_text())["rows"].keys() == {"fedavg", "fpl"}
    with tarfile.open(packed) as tar:
        names = tar.getnames()
    assert "out/runs/fpl-seed0/metrics.jsonl" in names and "out/logs/fpl-seed0.log" in names
    assert not any("checkpoint" in name or ".protofl" in name for name in names)


def test_a_passed_deadline_starts_nothing_and_says_so(tmp_path: Path) -> None:
    grid = load_script()
    argv = ["--algorithms", "fedavg", "--seeds", "0,1", "--deadline-minutes", "0"]
    assert grid.main([*argv, "--out", str(tmp_path), *TINY]) == 1
    record = json.loads((tmp_path / "parallel_runs.json").read_text())
    assert [r["status"] for r in record["runs"]] == ["not started", "not started"]
    assert not (tmp_path / "runs").exists()


def test_a_second_grid_into_the_same_folder_keeps_the_first_ones_record(tmp_path: Path) -> None:
    grid = load_script()
    for seeds in ("0", "1", "2"):
        argv = ["--algorithms", "fedavg", "--seeds", seeds, "--deadline-minutes", "0"]
        grid.main([*argv, "--out", str(tmp_path), *TINY])
    record = json.loads((tmp_path / "parallel_runs.json").read_text())
    assert [r["seed"] for r in record["runs"]] == [2]
    earlier = record["earlier_grids"]
    assert [[r["seed"] for r in g["runs"]] for g in earlier] == [[0], [1]]
    assert all("earlier_grids" not in g for g in earlier)  # one flat list, oldest first


def test_a_leave_one_out_jobs_progress_adds_up_its_held_out_domains(tmp_path: Path) -> None:
    grid = load_script()
    for domain, accuracies in (("a", [0.1, 0.2]), ("b", [0.3, 0.4, 0.5])):
        folder = tmp_path / f"holdout-{domain}" / "runs" / "fpl-seed0"
        folder.mkdir(parents=True)
        lines = [json.dumps({"mean_accuracy": value}) for value in accuracies]
        (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    rounds, last = grid.job_progress(tmp_path, "fpl-seed0")
    assert rounds == 5 and last == pytest.approx(50.0)
    assert grid.job_progress(tmp_path, "fedavg-seed0") == (0, None)
