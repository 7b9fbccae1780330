"""The recorded short runs every path must reproduce: the simulator, a resumed run, the
compiled step and Flower (torchtune's recipe tests hold their variants to one set of numbers
the same way). One file per registered algorithm under ``tests/golden/``.

Why they hold on any CPU: the runs are recorded and replayed in float64 (``precision="fp64"``).
CPUs differ in their kernels (AVX-512, AVX2, plain SSE; oneDNN's and ATen's choices), which
sum in different orders; in fp32 a 3-round federation with a contrast temperature of 0.02 or
FedDAP's merge at 0.001 grew those last-bit differences into other accuracies (21 of 64 test
samples for fpl-global-contrast, 0.8 % on a FedDAP loss). In float64 they start about nine
digits smaller. Measured with ``python benchmarks/golden_spread.py OUT.json`` (every
algorithm under native, AVX2 and SSE4.1/default kernels, against the recorded files): the
largest relative train difference was 2.2e-7 (MOON, default kernels), the largest accuracy
difference 0 test samples; ``benchmarks/results/golden_spread.json`` holds the numbers and
the CPU. The tolerances below sit well above that spread and far below what a change does: a
0.1 % change of one loss weight moves the train metrics by more than 1e-4
(tests/contract/test_golden.py shows it fails).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from protofl import RunConfig
from protofl.core.records import RoundRecord

GOLDEN = Path(__file__).parent / "golden"
# Measured spread across kernel choices: 2.2e-7 relative, 0 test samples (module docstring).
TRAIN_REL = 1e-5  # 45 times the largest measured difference
ACCURACY_ABS = 1e-9  # the same test samples right: no sample flipped under any kernel


def golden_config(algorithm: str, **changes: Any) -> RunConfig:
    settings: dict[str, Any] = {
        "rounds": 3,
        "local_epochs": 2,
        "batch_size": 16,
        "lr": 0.05,
        "seed": 3,
        "precision": "fp64",  # see the module docstring: why the golden runs hold on any CPU
    }
    return RunConfig(algorithm=algorithm, **{**settings, **changes})


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
            assert got["train"][key] == pytest.approx(value, rel=TRAIN_REL, abs=1e-9), key
        for domain, value in want["accuracy"].items():
            assert got["accuracy"][domain] == pytest.approx(value, abs=ACCURACY_ABS), domain
