"""``protofl report``: tables from finished run folders made by any command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from scipy import stats as scipy_stats

from protofl.cli import main
from protofl.errors import ConfigError
from protofl.outputs.report import find_runs, group_runs

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "benchmarks" / "results" / "office_caltech_reduced"


def rows(table: str) -> set[str]:
    """A table's method rows, without the seeds column (the committed ones predate it)."""
    lines = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    return {"|".join(line.split("|")[:7]) for line in lines[1:]}


def test_report_rebuilds_the_committed_office_caltech_table_exactly(tmp_path: Path) -> None:
    assert main(["report", str(COMMITTED), "--out", str(tmp_path), "--no-plots"]) == 0
    rebuilt = (tmp_path / "table.md").read_text()
    assert rows(rebuilt) == rows((COMMITTED / "table.md").read_text())
    assert len(rows(rebuilt)) == 12
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"]["fpl"]["AVG"]["n"] == 2


def test_runs_with_different_settings_are_not_pooled(tmp_path: Path) -> None:
    for seed in (0, 1):
        shutil.copytree(COMMITTED / "runs" / f"fedavg-seed{seed}", tmp_path / f"a{seed}")
    config_path = tmp_path / "a1" / "config.json"
    config = json.loads(config_path.read_text())
    # threads and the evaluation batch size say how it ran: allowed to differ
    config["lr"], config["threads"], config["eval_batch_size"] = 0.05, 7, 64
    config_path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"settings differ in lr\. Report them separately"):
        group_runs(find_runs([tmp_path / "a0", tmp_path / "a1"]))


def test_one_seed_shows_no_spread_and_unfinished_runs_are_refused(tmp_path: Path) -> None:
    shutil.copytree(COMMITTED / "runs" / "fpl-seed0", tmp_path / "fpl")
    assert main(["report", str(tmp_path / "fpl"), "--out", str(tmp_path / "r"), "--no-plots"]) == 0
    table = (tmp_path / "r" / "table.md").read_text()
    fpl_row = next(line for line in table.splitlines() if line.startswith("| fpl "))
    assert "±" not in fpl_row and fpl_row.endswith("| 0 |")
    (tmp_path / "fpl" / "summary.json").unlink()
    with pytest.raises(ConfigError, match="has not finished"):
        find_runs([tmp_path / "fpl"])


def test_a_grid_still_running_is_reported_without_its_unfinished_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("fpl-seed0", "fpl-seed1", "fedavg-seed0"):
        shutil.copytree(COMMITTED / "runs" / name, tmp_path / "grid" / "runs" / name)
    running = tmp_path / "grid" / "runs" / "fpl-seed1"
    (running / "summary.json").unlink()
    lines = (running / "metrics.jsonl").read_text().splitlines()
    (running / "metrics.jsonl").write_text("\n".join(lines[:3]) + "\n")
    out = tmp_path / "r"
    assert main(["report", str(tmp_path / "grid"), "--out", str(out), "--no-plots"]) == 0
    assert f"left out, not finished: {running}" in capsys.readouterr().err.replace("\n", "")
    saved = json.loads((out / "results.json").read_text())
    assert saved["rows"]["fpl"]["AVG"]["n"] == 1 and saved["rows"]["fedavg"]["AVG"]["n"] == 1
    for name in ("fpl-seed0", "fedavg-seed0"):
        (tmp_path / "grid" / "runs" / name / "summary.json").unlink()
    with pytest.raises(ConfigError, match="none of the 3 runs found has finished"):
        find_runs([tmp_path / "grid"], skipped=[])


def test_paired_differences_against_a_baseline_seed_by_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["report", str(COMMITTED), "--out", str(tmp_path), "--no-plots", "--baseline", "fpl"]
    assert main(argv) == 0
    saved = json.loads((tmp_path / "results.json").read_text())

    def last5_avg(run: str) -> float:  # straight from the run's metrics file
        history = [json.loads(line) for line in (COMMITTED / "runs" / run / "metrics.jsonl")
                   .read_text().splitlines()]  # fmt: skip
        return sum(100 * r["mean_accuracy"] for r in history[-5:]) / 5

    expected = [last5_avg(f"fedavg-seed{s}") - last5_avg(f"fpl-seed{s}") for s in (0, 1)]
    paired = saved["rows"]["fedavg"]["paired"]
    assert paired["seeds"] == [0, 1]
    assert paired["differences"] == pytest.approx(expected)
    assert paired["ahead"] == sum(d > 0 for d in expected)
    assert "paired" not in saved["rows"]["fpl"]
    table = (tmp_path / "table.md").read_text()
    fedavg_row = next(line for line in table.splitlines() if line.startswith("| fedavg "))
    ahead = sum(d > 0 for d in expected)
    assert fedavg_row.endswith(f"{expected[0]:+.2f}, {expected[1]:+.2f} (ahead {ahead}/2) |")
    capsys.readouterr()
    assert main(["report", str(COMMITTED), "--out", str(tmp_path / "x"), "--baseline", "fpll"]) == 2
    assert "baseline 'fpll' is not among the reported algorithms" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_variant_names_its_options_that_differ_from_the_defaults(tmp_path: Path) -> None:
    shutil.copytree(COMMITTED / "runs" / "fpl-seed0", tmp_path / "fpl")
    shutil.copytree(COMMITTED / "runs" / "fedavg-seed0", tmp_path / "fedavg")
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r0"), "--no-plots"]) == 0
    assert "not at protofl's defaults" not in (tmp_path / "r0" / "table.md").read_text()
    config_path = tmp_path / "fpl" / "config.json"
    config = json.loads(config_path.read_text())
    config["algorithm_options"]["fpl"]["temperature"] = 0.5
    config_path.write_text(json.dumps(config))
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r1"), "--no-plots"]) == 0
    lines = (tmp_path / "r1" / "table.md").read_text().splitlines()
    assert "- fpl: options not at protofl's defaults: temperature=0.5" in lines
    assert not any(line.startswith("- fedavg: options") for line in lines)


def test_rows_of_one_table_share_the_protocol(tmp_path: Path) -> None:
    shutil.copytree(COMMITTED / "runs" / "fpl-seed0", tmp_path / "fpl")
    shutil.copytree(COMMITTED / "runs" / "fedavg-seed0", tmp_path / "fedavg")
    group_runs(find_runs([tmp_path / "fpl", tmp_path / "fedavg"]))  # one protocol: fine
    config_path = tmp_path / "fedavg" / "config.json"
    config = json.loads(config_path.read_text())
    config["local_epochs"] = 10
    config_path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"ran different protocols \(local_epochs differ\)"):
        group_runs(find_runs([tmp_path / "fpl", tmp_path / "fedavg"]))


def _history(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _window_avg(run: str, window: int) -> float:
    """A run's AVG over its last ``window`` rounds, straight from its metrics file."""
    tail = _history(COMMITTED / "runs" / run)[-window:]
    return sum(100 * r["mean_accuracy"] for r in tail) / window


def test_fairness_and_pooled_columns_from_the_metrics_files(tmp_path: Path) -> None:
    """Spread across domains, worst domain and pooled accuracy of the last 5 rounds, worked
    out from metrics.jsonl and the test sizes in config.json (these runs predate recorded
    pooled accuracy): the pooled figure counts correct samples."""
    run = COMMITTED / "runs" / "fpl-seed0"
    shutil.copytree(run, tmp_path / "fpl")
    assert main(["report", str(tmp_path / "fpl"), "--out", str(tmp_path / "r"), "--no-plots"]) == 0
    row = json.loads((tmp_path / "r" / "results.json").read_text())["rows"]["fpl"]
    tail = _history(run)[-5:]
    sizes = json.loads((run / "config.json").read_text())["resolved"]["test_sizes"]
    means = {d: 100 * sum(r["per_domain_accuracy"][d] for r in tail) / 5 for d in sizes}
    average = sum(means.values()) / len(means)
    spread = (sum((m - average) ** 2 for m in means.values()) / (len(means) - 1)) ** 0.5
    correct = sum(round(r["per_domain_accuracy"][d] * n) for r in tail for d, n in sizes.items())
    assert row["domain_std"]["mean"] == pytest.approx(spread)
    assert row["worst"]["mean"] == pytest.approx(min(means.values()))
    assert row["worst_domains"] == [min(means, key=lambda d: means[d])]
    assert row["pooled"]["mean"] == pytest.approx(100 * correct / (5 * sum(sizes.values())))
    table = (tmp_path / "r" / "table.md").read_text()
    assert "| AVG | std | worst | pooled | seeds |" in table
    fpl_row = next(line for line in table.splitlines() if line.startswith("| fpl "))
    assert f"| {row['pooled']['mean']:.2f} | 0 |" in fpl_row


def test_pooled_accuracy_is_recorded_or_shown_missing_never_invented(tmp_path: Path) -> None:
    """Without test sizes in config.json a run's pooled accuracy comes from its records;
    a run with neither shows it as missing, in the table and in the paired statistics."""
    for name in ("fpl-seed0", "fedavg-seed0"):
        shutil.copytree(COMMITTED / "runs" / name, tmp_path / name)
        config_path = tmp_path / name / "config.json"
        config = json.loads(config_path.read_text())
        del config["resolved"]["test_sizes"]
        config_path.write_text(json.dumps(config))
    history = _history(tmp_path / "fpl-seed0")
    for record in history:
        record["pooled_accuracy"] = 0.5  # as a new run records it
    (tmp_path / "fpl-seed0" / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in history)
    )
    argv = ["report", str(tmp_path), "--out", str(tmp_path / "r"), "--no-plots"]
    assert main([*argv, "--baseline", "fpl"]) == 0
    saved = json.loads((tmp_path / "r" / "results.json").read_text())
    assert saved["rows"]["fpl"]["pooled"]["mean"] == pytest.approx(50.0)
    assert saved["rows"]["fedavg"]["pooled"] is None
    assert saved["rows"]["fedavg"]["paired_statistics"]["pooled"]["last_5"]["missing"]
    table = (tmp_path / "r" / "table.md").read_text()
    fedavg_row = next(line for line in table.splitlines() if line.startswith("| fedavg "))
    assert "| missing | 0 |" in fedavg_row
    assert "missing (not recorded)" in table


def test_paired_statistics_per_window_against_scipy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["report", str(COMMITTED), "--out", str(tmp_path), "--no-plots", "--baseline", "fpl"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    windows = saved["rows"]["fedavg"]["paired_statistics"]["AVG"]
    for window in (5, 10, 20):
        differences = [
            _window_avg(f"fedavg-seed{s}", window) - _window_avg(f"fpl-seed{s}", window)
            for s in (0, 1)
        ]
        test = scipy_stats.ttest_1samp(differences, 0.0)
        low, high = test.confidence_interval(0.95)
        entry = windows[f"last_{window}"]
        assert entry["differences"] == pytest.approx(differences)
        assert entry["mean"] == pytest.approx(sum(differences) / 2)
        assert (entry["ci_low"], entry["ci_high"]) == pytest.approx((low, high))
        assert entry["p_value"] == pytest.approx(test.pvalue)
        assert entry["separated"] == (low > 0 or high < 0)
        assert entry["seeds_for_power"] >= 2
    table = (tmp_path / "table.md").read_text()
    assert "| Method | seeds | last 5 rounds | last 10 rounds | last 20 rounds |" in table
    statistics_row = next(
        line for line in table.splitlines() if line.startswith("| fedavg | 0,1 |")
    )
    assert statistics_row.count("separated") == 3 and "seeds for 80% power" in statistics_row
    assert "AVG minus fpl's, paired over seeds" in printed
    assert "pooled accuracy minus fpl's, paired over seeds" in printed


def test_a_window_longer_than_the_runs_is_reported_not_shortened(tmp_path: Path) -> None:
    for name in ("fpl-seed0", "fpl-seed1", "fedavg-seed0", "fedavg-seed1"):
        shutil.copytree(COMMITTED / "runs" / name, tmp_path / name)
        config_path = tmp_path / name / "config.json"
        config = json.loads(config_path.read_text())
        config["rounds"] = 8
        config_path.write_text(json.dumps(config))
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        (tmp_path / name / "metrics.jsonl").write_text("\n".join(lines[:8]) + "\n")
    argv = ["report", str(tmp_path), "--out", str(tmp_path / "r"), "--no-plots"]
    assert main([*argv, "--baseline", "fpl"]) == 0
    saved = json.loads((tmp_path / "r" / "results.json").read_text())
    windows = saved["rows"]["fedavg"]["paired_statistics"]["AVG"]
    assert "mean" in windows["last_5"]
    for window in (10, 20):
        assert windows[f"last_{window}"]["too_short"] and "mean" not in windows[f"last_{window}"]
    assert saved["rows"]["fedavg"]["windows"]["last_10"] is None
    table = (tmp_path / "r" / "table.md").read_text()
    assert "runs have 8 rounds, fewer than 10 | runs have 8 rounds, fewer than 20 |" in table


def test_a_resumed_run_names_every_part_and_a_mixed_row_says_so() -> None:
    from protofl.outputs.report import FinishedRun
    from protofl.outputs.report_text import _provenance_lines

    def run(parts: list[dict[str, Any]] | None, precision: str = "bf16") -> FinishedRun:
        resolved: dict[str, Any] = {"precision": precision, "produced_by": {"commit": "aaa"}}
        if parts is not None:
            resolved["parts"] = parts
        return FinishedRun(Path("x"), {"resolved": resolved}, [])

    old = run(None)  # recorded before parts existed
    assert old.facts() == {"precision": "bf16", "commit": "aaa", "parts": 1}
    resumed = run(
        [
            {"first_round": 1, "precision": "bf16", "commit": "aaa"},
            {"first_round": 48, "precision": "fp32", "commit": "bbb"},
        ]
    )
    assert resumed.facts() == {"precision": "bf16+fp32", "commit": "aaa+bbb", "parts": 2}
    table = {"rows": {"fpl": {"seeds": [0, 1], "facts": [old.facts(), resumed.facts()]}}}
    (line,) = _provenance_lines(table)
    assert "seed 1: bf16+fp32 @ aaa+bbb" in line
    assert "(mixed precisions)" in line and "(mixed commits)" in line
