"""Short recorded runs: any change to the maths, the loops or the seeding shows up here.

To re-record after an intended change, run with PROTOFL_UPDATE_GOLDEN=1 and say why in
the commit message.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from protofl import RunConfig, train_federated
from protofl.algorithms import ALGORITHMS

from tiny_data import TinyNet, tiny_clients

GOLDEN = Path(__file__).parent / "golden"


def tiny_run(algorithm: str) -> list[dict[str, object]]:
    clients, tests = tiny_clients()
    torch.manual_seed(0)
    config = RunConfig(
        algorithm=algorithm,
        rounds=3,
        local_epochs=2,
        batch_size=16,
        lr=0.05,
        seed=3,
        precision="fp32",  # the reference path; bf16 depends on the CPU's instructions
    )
    result = train_federated(clients, tests, TinyNet(), config)
    return [
        {
            "round": r.round,
            "accuracy": r.per_domain_accuracy,
            "train": r.train,
            "prototypes": r.num_prototypes,
        }
        for r in result.history
    ]


@pytest.mark.parametrize("algorithm", ALGORITHMS.names())
def test_matches_recorded_run(algorithm: str) -> None:
    path = GOLDEN / f"{algorithm}_tiny.json"
    records = tiny_run(algorithm)
    if os.environ.get("PROTOFL_UPDATE_GOLDEN"):
        path.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
    if not path.exists():
        pytest.fail(f"no recorded run for {algorithm}: record {path.name} with PROTOFL_UPDATE_GOLDEN=1")
    expected = json.loads(path.read_text())
    assert [r["round"] for r in records] == [r["round"] for r in expected]
    for got, want in zip(records, expected, strict=True):
        assert got["prototypes"] == want["prototypes"]
        assert got["train"].keys() == want["train"].keys()  # type: ignore[attr-defined]
        for key, value in want["train"].items():
            assert got["train"][key] == pytest.approx(value, rel=2e-4, abs=1e-5), key  # type: ignore[index]
        for domain, value in want["accuracy"].items():
            assert got["accuracy"][domain] == pytest.approx(value, abs=1 / 64 + 1e-9), domain  # type: ignore[index]
