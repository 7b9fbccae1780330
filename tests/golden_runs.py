"""The recorded short runs every path must reproduce: the simulator, a resumed run, the
compiled step and Flower (torchtune's recipe tests hold their variants to one set of numbers
the same way). One file per registered algorithm under ``tests/golden/``."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from protofl import RunConfig
from protofl.records import RoundRecord

GOLDEN = Path(__file__).parent / "golden"


def golden_config(algorithm: str, **changes: Any) -> RunConfig:
    return RunConfig(
        algorithm=algorithm,
        rounds=3,
        local_epochs=2,
        batch_size=16,
        lr=0.05,
        seed=3,
        precision="fp32",  # the reference path; bf16 depends on the CPU's instructions
        **changes,
    )


def as_records(history: Sequence[RoundRecord]) -> list[dict[str, Any]]:
    return [
        {
            "round": r.round,
            "accuracy": r.per_domain_accuracy,
            "train": r.train,
            "prototypes": r.num_prototypes,
        }
        for r in history
    ]


def assert_matches_golden(algorithm: str, history: Sequence[RoundRecord], record: bool) -> None:
    """Compare with the recorded run (write it first when ``record`` and
    PROTOFL_UPDATE_GOLDEN=1)."""
    path = GOLDEN / f"{algorithm}_tiny.json"
    records = as_records(history)
    if record and os.environ.get("PROTOFL_UPDATE_GOLDEN"):
        path.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    if not path.exists():
        pytest.fail(
            f"no recorded run for {algorithm}: record {path.name} with PROTOFL_UPDATE_GOLDEN=1"
        )
    expected = json.loads(path.read_text())
    assert [r["round"] for r in records] == [r["round"] for r in expected]
    for got, want in zip(records, expected, strict=True):
        assert got["prototypes"] == want["prototypes"]
        assert got["train"].keys() == want["train"].keys()
        for key, value in want["train"].items():
            assert got["train"][key] == pytest.approx(value, rel=2e-4, abs=1e-5), key
        for domain, value in want["accuracy"].items():
            assert got["accuracy"][domain] == pytest.approx(value, abs=1 / 64 + 1e-9), domain
