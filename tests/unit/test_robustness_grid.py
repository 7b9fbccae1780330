"""benchmarks/robustness_grid.py: which cells exist, the settings each run gets, and the table
built from finished run folders."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "robustness_grid", ROOT / "benchmarks" / "robustness_grid.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


grid = load_script()


def test_prototype_cells_exist_only_for_algorithms_that_send_prototypes() -> None:
    assert not grid.exists(grid.Cell("fedavg", "prototype-poison", "mean", 0))
    assert not grid.exists(grid.Cell("fedavg", "none", "prototype-filter", 0))
    assert grid.exists(grid.Cell("fedavg", "alie", "krum", 0))
    assert grid.exists(grid.Cell("fpl", "prototype-poison", "prototype-filter", 0))
    # FedHEAL combines weights by its own rule: no weight-rule defence, the prototype one yes
    assert not grid.exists(grid.Cell("fpl-fedheal", "alie", "krum", 0))
    assert grid.exists(grid.Cell("fpl-fedheal", "alie", "mean", 0))
    assert grid.exists(grid.Cell("fpl-fedheal", "prototype-poison", "prototype-filter", 0))
    assert not grid.exists(grid.Cell("fedheal", "none", "prototype-filter", 0))
    # the distance screen stands before every algorithm's aggregation, FedHEAL's included
    for algorithm in ("fpl-fedheal", "fedheal", "fedavg", "fpl"):
        assert grid.exists(grid.Cell(algorithm, "noise", "distance-screen", 0))
    # the no-liar trigger baseline pairs with the rules whose success rate it is read against
    assert grid.exists(grid.Cell("fpl", "backdoor-probe", "geometric-median", 0))
    assert not grid.exists(grid.Cell("fpl", "backdoor-probe", "krum", 0))
    assert grid.cell_settings(grid.Cell("fpl-fedheal", "noise", "distance-screen", 0), 0.2) == [
        "distance_screen=3", "attack=noise", "malicious_fraction=0.2"
    ]  # fmt: skip


def test_each_run_gets_its_attack_and_defence(tmp_path: Path) -> None:
    def sets(cell: object) -> list[str]:
        command = grid.command(cell, tmp_path / "run", 0.25, ["--rounds", "2"])
        return [command[i + 1] for i, part in enumerate(command) if part == "--set"]

    assert sets(grid.Cell("fpl", "alie", "krum", 1)) == [
        "aggregation=krum",
        "attack=alie",
        "malicious_fraction=0.25",
    ]
    assert sets(grid.Cell("fpl", "none", "mean", 0)) == []
    assert sets(grid.Cell("fpl", "backdoor-probe", "mean", 0)) == [
        "attack=backdoor",
        "malicious_fraction=1e-9",
    ]
    # an interrupted run (a checkpoint, no summary) is resumed, not restarted
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"")
    assert "--resume" in grid.command(
        grid.Cell("fpl", "none", "mean", 0), tmp_path / "run", 0.2, []
    )


def fake_run(
    folder: Path, seed: int, avg: float, domains: dict[str, float], asr: float | None
) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"seed": seed}))
    summary = {"last_5_rounds": {"mean_accuracy": avg, "per_domain_accuracy": domains}}
    (folder / "summary.json").write_text(json.dumps(summary))
    rounds = [{"round": r, "attack_success_rate": asr} for r in range(1, 7)]
    (folder / "metrics.jsonl").write_text("\n".join(map(json.dumps, rounds)) + "\n")


def test_the_table_averages_seeds_and_shows_the_success_rate(tmp_path: Path) -> None:
    cells = [grid.Cell("fpl", "backdoor", "mean", s) for s in (0, 1)]
    fake_run(tmp_path / "runs" / cells[0].name, 0, 0.40, {"a": 0.5, "b": 0.3}, 0.2)
    fake_run(tmp_path / "runs" / cells[1].name, 1, 0.50, {"a": 0.6, "b": 0.4}, 0.4)
    (row,) = grid.summarise(cells, tmp_path)
    assert row["seeds"] == [0, 1]
    assert row["avg_by_seed"] == {"0": 40.0, "1": 50.0}
    assert abs(row["avg"]["mean"] - 45.0) < 1e-9 and abs(row["avg"]["std"] - 7.0710678) < 1e-6
    assert abs(row["attack_success_rate"]["mean"] - 30.0) < 1e-9
    assert abs(row["per_domain"]["b"]["mean"] - 35.0) < 1e-9
    table = grid.markdown([row], {"malicious_fraction": 0.2, "command": "c", "machine": "m"})
    assert "| backdoor | 45.00 ± 7.07 (ASR 30.00 ± 14.14) |" in table


def test_a_cell_with_fewer_seeds_than_the_rest_says_so(tmp_path: Path) -> None:
    cells = [grid.Cell("fpl", "none", "mean", s) for s in (0, 1)] + [
        grid.Cell("fpl", "none", "krum", 0)
    ]
    for cell, avg in zip(cells, (0.40, 0.50, 0.30), strict=True):
        fake_run(tmp_path / "runs" / cell.name, cell.seed, avg, {"a": avg}, None)
    rows = grid.summarise(cells, tmp_path)
    table = grid.markdown(rows, {"malicious_fraction": 0.2, "command": "c", "machine": "m"})
    assert "| none | 45.00 ± 7.07 | 30.00 (n=1) |" in table
    assert "| krum | 30.00 | 30.00 (n=1) |" in table  # the per-domain table too
    assert "k of the 2 seeds" in table


def test_a_run_made_with_other_settings_than_its_cell_now_has_is_not_counted(
    tmp_path: Path,
) -> None:
    cell = grid.Cell("fpl", "none", "trimmed-mean", 0)
    folder = tmp_path / "runs" / cell.name
    fake_run(folder, 0, 0.40, {"a": 0.4}, None)
    assert grid.stale(folder, cell, 0.2) is None  # a record without the key is not judged
    config = {"seed": 0, "aggregation": "trimmed-mean", "trim_fraction": 0.1}
    (folder / "config.json").write_text(json.dumps(config))
    assert grid.stale(folder, cell, 0.2) == "trim_fraction=0.1 where the grid now sets 0.25"
    assert grid.summarise([cell], tmp_path) == []
    (folder / "checkpoint.pt").write_bytes(b"")  # nor is it resumed: it starts afresh
    (folder / "summary.json").unlink()
    assert "--overwrite" in grid.command(cell, folder, 0.2, [])
    config["trim_fraction"] = 0.25
    (folder / "config.json").write_text(json.dumps(config))
    assert "--resume" in grid.command(cell, folder, 0.2, [])


def test_the_weight_each_domain_and_the_liars_got_is_averaged_over_rounds(tmp_path: Path) -> None:
    cell = grid.Cell("fpl", "backdoor", "geometric-median", 0)
    folder = tmp_path / "runs" / cell.name
    fake_run(folder, 0, 0.4, {"a": 0.4, "b": 0.4}, 0.1)
    sizes = {"a-0": 300, "a-1": 100, "b-0": 100}
    config = {"seed": 0, "resolved": {"malicious_clients": ["a-1"], "client_sizes": sizes}}
    (folder / "config.json").write_text(json.dumps(config))
    steps = [  # round 2: b-0 not sampled, so domain b got nothing that round
        {"a-0": {"weight": 0.5}, "a-1": {"weight": 0.3}, "b-0": {"weight": 0.2}},
        {"a-0": {"weight": 0.6}, "a-1": {"weight": 0.4}},
    ]
    lines = [json.dumps({"round": r + 1, "server_step": step}) for r, step in enumerate(steps)]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (row,) = grid.summarise([cell], tmp_path)
    shares = {k: round(v["mean"], 6) for k, v in row["weight_share"].items()}
    assert shares == {"malicious": 35.0, "a": 90.0, "b": 10.0}
    assert row["size_share"] == {"a": 80.0, "b": 20.0}
    table = grid.markdown([row], {"malicious_fraction": 0.2, "command": "c", "machine": "m"})
    assert "| (samples) | mean | 80.0 | 20.0 | - |" in table
    assert "| backdoor | geometric-median | 90.00 | 10.00 | 35.00 |" in table


def test_rules_that_record_no_weights_have_no_weight_share(tmp_path: Path) -> None:
    cell = grid.Cell("fpl", "none", "median", 0)
    fake_run(tmp_path / "runs" / cell.name, 0, 0.4, {"a": 0.4}, None)
    (row,) = grid.summarise([cell], tmp_path)
    assert row["weight_share"] is None
    assert "Share of the server's weight" not in grid.markdown(
        [row], {"malicious_fraction": 0.2, "command": "c", "machine": "m"}
    )


def test_the_table_says_on_which_cpu_and_precision_its_runs_ran(tmp_path: Path) -> None:
    cells = [grid.Cell("fpl", "none", d, 0) for d in ("mean", "krum", "median")]
    parts = [
        [{"cpu": "AMD EPYC", "precision": "fp32"}],
        [{"cpu": "Xeon", "precision": "bf16"}],
        [{"cpu": "Xeon", "precision": "bf16"}, {"cpu": "AMD EPYC", "precision": "fp32"}],
    ]  # the third was resumed on another machine
    for cell, ran in zip(cells, parts, strict=True):
        folder = tmp_path / "runs" / cell.name
        fake_run(folder, 0, 0.4, {"a": 0.4}, None)
        (folder / "config.json").write_text(json.dumps({"seed": 0, "resolved": {"parts": ran}}))
    rows = {r["defence"]: r for r in grid.summarise(cells, tmp_path)}
    assert rows["mean"]["ran_on"] == ["AMD EPYC (fp32)"]
    assert rows["median"]["ran_on"] == ["AMD EPYC (fp32)", "Xeon (bf16)"]
    table = grid.markdown(list(rows.values()), {"malicious_fraction": 0.2, "command": "c",
                                                "machine": "m"})  # fmt: skip
    assert "The runs ran on: AMD EPYC (fp32): 2 cells; Xeon (bf16): 2 cells." in table


def test_weight_shares_sum_by_the_recorded_domain_not_the_clients_name(tmp_path: Path) -> None:
    cell = grid.Cell("fpl", "none", "geometric-median", 0)
    folder = tmp_path / "runs" / cell.name
    fake_run(folder, 0, 0.4, {"x": 0.4, "y": 0.4}, None)
    resolved = {
        "client_sizes": {"alice": 30, "bob": 10, "x-0": 60},
        "client_domains": {"alice": "x", "bob": "y", "x-0": "y"},  # x-0's name misleads
    }
    (folder / "config.json").write_text(json.dumps({"seed": 0, "resolved": resolved}))
    step = {"alice": {"weight": 0.5}, "bob": {"weight": 0.2}, "x-0": {"weight": 0.3}}
    (folder / "metrics.jsonl").write_text(json.dumps({"round": 1, "server_step": step}) + "\n")
    (row,) = grid.summarise([cell], tmp_path)
    assert {k: round(v["mean"], 6) for k, v in row["weight_share"].items()} == {
        "malicious": 0.0, "x": 50.0, "y": 50.0
    }  # fmt: skip
    assert row["size_share"] == {"x": 30.0, "y": 70.0}
