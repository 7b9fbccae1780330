"""Unseen domains: a held-out domain has no client, and the global model is scored on all of
its data every round; the report shows it; wrong names are named (on Flower:
tests/integration/test_flower_strategy.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from protofl import RunConfig, run
from protofl.cli import main
from protofl.engine.loading import load_federation
from protofl.errors import ConfigError

SMALL: dict[str, Any] = {
    "rounds": 2,
    "local_epochs": 1,
    "clients_per_domain": {"handwritten": 1, "synthetic": 1, "strokes": 1, "segments": 1},
    "client_fraction": 0.1,
    "precision": "fp32",
    "threads": 1,
}


def test_a_held_out_domain_has_no_client_and_is_scored_on_all_its_data() -> None:
    config = RunConfig(**SMALL, holdout_domains=("segments",))
    _, federation, resolved = load_federation(config)
    assert {c.domain for c in federation.clients} == {"handwritten", "synthetic", "strokes"}
    assert [t.domain for t in federation.test_sets] == ["handwritten", "synthetic", "strokes"]
    _, everything, _ = load_federation(RunConfig(**SMALL))
    segments = next(t for t in everything.test_sets if t.domain == "segments")
    (unseen,) = federation.holdout_sets
    assert unseen.domain == "segments" and len(unseen.data) > len(segments.data)
    assert resolved["holdout_sizes"] == {"segments": len(unseen.data)}
    # the other domains' clients are drawn exactly as without the hold-out
    same = {c.client_id: c.indices.tolist() for c in everything.clients if c.domain != "segments"}
    assert {c.client_id: c.indices.tolist() for c in federation.clients} == same


@pytest.mark.slow
def test_each_round_records_the_unseen_domain_and_report_shows_it(tmp_path: Path) -> None:
    for seed in (0, 1):
        out = tmp_path / "runs" / f"fpl-{seed}"
        result = run(RunConfig(**SMALL, seed=seed, holdout_domains=("segments",), out=str(out)))
        for record in result.history:
            assert record.holdout_accuracy is not None
            assert set(record.holdout_accuracy) == {"segments"}
            assert "segments" not in record.per_domain_accuracy
        last = result.summary["last_5_rounds"]
        assert set(last["holdout_per_domain_accuracy"]) == {"segments"}
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "t"), "--no-plots"]) == 0
    table = (tmp_path / "t" / "table.md").read_text()
    assert "Accuracy (%) on held-out domains" in table
    row = json.loads((tmp_path / "t" / "results.json").read_text())["rows"]["fpl"]
    assert set(row["holdout"]) == {"segments", "AVG"} and row["holdout"]["AVG"]["n"] == 2


def test_bad_holdout_settings_are_named() -> None:
    with pytest.raises(ConfigError, match="segmnts"):
        load_federation(RunConfig(**SMALL, holdout_domains=("segmnts",)))
    every = ("handwritten", "synthetic", "strokes", "segments")
    with pytest.raises(ConfigError, match="leaves no domain to train on"):
        load_federation(RunConfig(**SMALL, holdout_domains=every))
