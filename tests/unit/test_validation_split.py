"""The validation split: class-stratified, seeded per client, disjoint from training, scored
each round, reported as test accuracy at the best validation round; refused on Flower."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from protofl import ClientArrays, RunConfig, train_federated
from protofl.data.user import federation_from_arrays
from protofl.engine.validation_split import held_out_positions, split_validation
from protofl.errors import ConfigError, DataError

from tiny_data import TinyNet, tiny_clients


def test_held_out_positions_take_floor_fraction_of_each_class() -> None:
    labels = np.array([0] * 10 + [1] * 7 + [2] * 1)
    taken = held_out_positions(labels, 0.3, seed=5)
    assert [int((labels[taken] == c).sum()) for c in (0, 1, 2)] == [3, 2, 0]  # floor(0.3 n)
    assert list(taken) == sorted(set(taken.tolist()))
    assert np.array_equal(taken, held_out_positions(labels, 0.3, seed=5))  # seeded
    assert not np.array_equal(taken, held_out_positions(labels, 0.3, seed=6))


def test_split_moves_samples_from_training_to_per_domain_validation_sets() -> None:
    clients, tests = tiny_clients()
    federation = federation_from_arrays(clients, tests, None, False)
    split = split_validation(federation, 0.25, seed=3)
    held_total = 0
    for before, after in zip(federation.clients, split.clients, strict=True):
        kept = set(after.indices.tolist())
        assert kept < set(before.indices.tolist())
        held = set(before.indices.tolist()) - kept
        labels = before.source.labels
        for cls in labels[before.indices].unique().tolist():
            n = int((labels[before.indices] == cls).sum())
            assert sum(int(labels[i] == cls) for i in held) == int(np.floor(0.25 * n))
        held_total += len(held)
    assert [t.domain for t in split.validation_sets] == ["red", "green"]
    assert sum(len(t.data) for t in split.validation_sets) == held_total
    assert split.test_sets == federation.test_sets
    assert split_validation(federation, 0.0, seed=3) is federation
    with pytest.raises(DataError, match="leaves it 1 training sample"):
        tiny = federation_from_arrays(
            [ClientArrays(clients[0].x[:2], np.array([0, 0]), "red")],
            {"red": tests["red"]},
            4,
            False,
        )
        split_validation(tiny, 0.5, seed=0)


def test_a_run_scores_its_validation_split_each_round_and_report_uses_it(
    tmp_path: Path,
) -> None:
    from protofl.cli import main

    clients, tests = tiny_clients()
    folders = []
    for seed in (0, 1):
        out = tmp_path / "runs" / f"fpl-{seed}"
        config = RunConfig(rounds=3, local_epochs=1, batch_size=16, precision="fp32",
                           seed=seed, validation_fraction=0.25, out=str(out))  # fmt: skip
        result = train_federated(clients, tests, TinyNet, config, write=True)
        for record in result.history:
            assert record.validation_accuracy is not None
            assert set(record.validation_accuracy) == {"red", "green"}
            assert record.validation_mean_accuracy == pytest.approx(
                sum(record.validation_accuracy.values()) / 2
            )
        sizes = result.resolved["validation_sizes"]  # 2 clients x 48: floor(12 n_c / 48) each
        assert set(sizes) == {"red", "green"} and all(16 <= n <= 24 for n in sizes.values())
        folders.append(out)
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "table")]) == 0
    report = json.loads((tmp_path / "table" / "results.json").read_text())
    row = report["rows"]["fpl"]
    expected = []
    for folder in folders:
        records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        best = max(records, key=lambda r: r["validation_mean_accuracy"])
        assert best["round"] in row["best_validation_rounds"]
        expected.append(100 * best["mean_accuracy"])
    assert row["at_best_validation"]["mean"] == pytest.approx(sum(expected) / 2)
    assert "at each run's round of best validation AVG" in (
        (tmp_path / "table" / "table.md").read_text()
    )


def test_validation_fraction_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"validation_fraction must lie in \[0, 1\)"):
        RunConfig(validation_fraction=1.0)
