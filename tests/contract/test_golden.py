"""Short recorded runs: any change to the maths, the loops or the seeding shows up here, and
the simulator, a resumed run and the compiled step must all give the recorded numbers (Flower
is held to the same files in test_flower_strategy.py).

To re-record after an intended change, run with PROTOFL_UPDATE_GOLDEN=1 and say why in
the commit message. The runs are recorded in float64, so they hold on every CPU's kernels
(tests/golden_runs.py says why and how it was measured); the last test here checks that with
older kernels forced.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from protofl import train_federated
from protofl.algorithms import ALGORITHMS
from protofl.core.records import RoundRecord

from golden_runs import assert_matches_golden, golden_config
from tiny_data import TinyNet, tiny_clients


def tiny_run(algorithm: str, **changes: object) -> list[RoundRecord]:
    clients, tests = tiny_clients()
    torch.manual_seed(0)
    result = train_federated(clients, tests, TinyNet(), golden_config(algorithm, **changes))
    return result.history


class StopAfter:
    """An observer that interrupts the run after ``round_index`` has been recorded."""

    def __init__(self, round_index: int) -> None:
        self.round_index = round_index

    def round_started(self, round_index: int, rounds: int) -> None:
        if round_index > self.round_index:
            raise KeyboardInterrupt

    def client_finished(self, round_index: int, client_id: str) -> None: ...

    def round_finished(self, record: RoundRecord) -> None: ...


@pytest.mark.parametrize("algorithm", ALGORITHMS.names())
def test_simulator_matches_recorded_run(algorithm: str) -> None:
    assert_matches_golden(algorithm, tiny_run(algorithm), record=True)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ALGORITHMS.names())
def test_resumed_run_matches_recorded_run(algorithm: str, tmp_path: Path) -> None:
    """Interrupted after round 1 (its checkpoint on disk), resumed in a fresh process state."""
    config = golden_config(algorithm, out=str(tmp_path / "run"))
    clients, tests = tiny_clients()
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train_federated(clients, tests, TinyNet(), config, observer=StopAfter(1), write=True)
    torch.manual_seed(12345)  # the resumed run must not depend on the global RNG
    clients, tests = tiny_clients()
    resumed = train_federated(clients, tests, TinyNet(), config, resume_dir=tmp_path / "run")
    assert resumed.summary["resumed_from_round"] == 1
    assert_matches_golden(algorithm, resumed.history, record=False)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["fedavg", "fpl", "moon"])
def test_compiled_step_matches_recorded_run(algorithm: str) -> None:
    """torch.compile's graph capture (the eager backend: the same kernels) changes nothing."""
    assert_matches_golden(algorithm, tiny_run(algorithm, compile="eager"), record=False)


@pytest.mark.parametrize(
    ("algorithm", "change"),
    [
        ("fpl", {"algorithm_options": {"fpl": {"cpcl_weight": 1.001}}}),  # a loss weight +0.1 %
        ("fedproto", {"algorithm_options": {"fedproto": {"weight_by_samples": False}}}),
        ("fedavg", {"aggregation": "trimmed-mean", "trim_fraction": 0.25}),  # the aggregation
        ("fedavg", {"seed": 4}),  # the seed path
    ],
    ids=["loss-weight", "prototype-aggregation", "weight-aggregation", "seed"],
)
def test_a_changed_algorithm_fails_its_golden_run(algorithm: str, change: dict[str, Any]) -> None:
    """The tolerances are tight enough to catch small changes, not only broken code."""
    with pytest.raises(AssertionError):
        assert_matches_golden(algorithm, tiny_run(algorithm, **change), record=False)


FORCED_KERNELS = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}


@pytest.mark.slow
@pytest.mark.parametrize("kernels", FORCED_KERNELS)
def test_golden_runs_hold_under_other_cpu_kernels(kernels: str) -> None:
    """Whatever CPU this suite runs on, the golden runs must also hold with the kernels of
    older ones forced, so a dependence on one CPU's kernels shows on the machine where the
    change is made (about 20 s each on two cores)."""
    env = {**os.environ, **FORCED_KERNELS[kernels], "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        str(Path(__file__)),
        "-k",
        "test_simulator_matches_recorded_run",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"{len(ALGORITHMS.names())} passed" in done.stdout
