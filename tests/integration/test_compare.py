"""protofl compare: the grid of runs, the paper-layout table, JSON, plots, and restarting."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from protofl.cli import main

ARGS = [
    "compare", "--algorithms", "fedavg,fpl", "--seeds", "0,1", "--rounds", "2",
    "--local-epochs", "1", "--quiet", "--set", "client_fraction=0.05",
    "--set", "clients_per_domain={handwritten=1, synthetic=1, strokes=1, segments=1}",
]  # fmt: skip


@pytest.mark.slow
def test_compare_writes_table_json_plots_and_restarts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    assert main([*ARGS, "--out", str(out)]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["domains"] == ["handwritten", "synthetic", "strokes", "segments"]
    # the AVG cell is the mean over seeds of each run's last-rounds mean accuracy
    per_seed = []
    for seed in (0, 1):
        lines = (out / "runs" / f"fpl-seed{seed}" / "metrics.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        per_seed.append(100 * statistics.fmean(r["mean_accuracy"] for r in records[-5:]))
    avg = report["rows"]["fpl"]["AVG"]
    assert avg["mean"] == pytest.approx(statistics.fmean(per_seed))
    assert avg["std"] == pytest.approx(statistics.stdev(per_seed))
    table = (out / "table.md").read_text()
    assert "| Method | Handwritten | Synthetic | Strokes | Segments | AVG |" in table
    assert "| fpl | " in table and "Command: `protofl compare" in table
    for plot in ("accuracy_per_round.png", "per_domain.png", "features.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot

    # an interrupted run (no summary yet) is resumed; finished runs are kept as they are
    (out / "runs" / "fedavg-seed1" / "summary.json").unlink()
    kept = (out / "runs" / "fpl-seed0" / "summary.json").stat().st_mtime_ns
    assert main([*ARGS, "--out", str(out), "--no-plots"]) == 0
    assert (out / "runs" / "fedavg-seed1" / "summary.json").exists()
    assert (out / "runs" / "fpl-seed0" / "summary.json").stat().st_mtime_ns == kept
    assert "fedavg" in capsys.readouterr().out


def test_compare_refuses_typos_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["compare", "--algorithms", "fedavg,fpll", "--out", str(tmp_path / "x"), "-q"]
    assert main(args) == 2
    assert "Did you mean 'fpl'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["compare", "--algorithms", "fpl", "--seeds", "a", "-q"]) == 2
    assert "--seeds: expected a comma-separated list" in capsys.readouterr().err
    baseline = ["compare", "--algorithms", "fedavg,fpl", "--baseline", "fedprox", "-q"]
    assert main([*baseline, "--out", str(tmp_path / "y")]) == 2
    assert "--baseline 'fedprox' is not among --algorithms" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()
