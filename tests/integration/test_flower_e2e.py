"""End to end on Flower: a real SuperLink and SuperNodes as separate processes on loopback.

Every process is started in its own session and its whole process group is killed when the
test ends, passed or failed (SuperNodes spawn SuperExec and ClientApp children). Also here:
importing protofl and running the simulator never imports flwr.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from flower_processes import (
    BIN,
    TINY,
    Deployment,
    end_lock_holder,
    finish,
    read_metrics,
    write_tiny_app,
)


def test_importing_protofl_and_simulating_never_imports_flwr() -> None:
    script = textwrap.dedent(
        """
        import argparse, sys
        import protofl, protofl.api, protofl.cli
        from protofl import RunConfig, train_federated
        sys.path.insert(0, "tests")
        from tiny_data import TinyNet, tiny_clients
        clients, tests = tiny_clients(per_client=16)
        train_federated(clients, tests, TinyNet(), RunConfig(rounds=1, local_epochs=1))
        from protofl.flower.cli import add_flower_commands
        from protofl.flower.settings import to_run_config
        add_flower_commands(argparse.ArgumentParser().add_subparsers())
        to_run_config(RunConfig())
        loaded = sorted(m for m in sys.modules if m == "flwr" or m.startswith("flwr."))
        assert not loaded, loaded
        """
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]


# ---- a deployment on loopback -----------------------------------------------------------------


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    if importlib.util.find_spec("flwr") is None or not (BIN / "flower-superlink").exists():
        pytest.skip("Flower is not installed (pip install protofl[flower]); no deployment test.")
    running = Deployment(tmp_path / "flower")
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.slow
@pytest.mark.flower_e2e
def test_two_supernodes_train_fpl_for_two_rounds(deployment: Deployment, tmp_path: Path) -> None:
    out = tmp_path / "results"
    # with a validation split, so real SuperNodes also answer the evaluate messages
    config = dataclasses.replace(TINY, out=str(out), validation_fraction=0.2)
    app = write_tiny_app(
        tmp_path / "app", config, num_nodes=2, min_clients=2, node_timeout=60, round_timeout=120
    )
    deployment.start_superlink()
    deployment.start_supernode(0)
    deployment.start_supernode(1)
    output = finish(deployment.run_app(app, timeout=240), 240, deployment)

    assert (out / "summary.json").exists(), output[-4000:]
    rounds = read_metrics(out)
    assert [r["round"] for r in rounds] == [1, 2]
    for record in rounds:
        assert sorted(record["clients"]) == ["handwritten-0", "synthetic-0"]  # type: ignore[call-overload]
        assert sorted(record["per_domain_accuracy"]) == ["handwritten", "synthetic"]  # type: ignore[call-overload]
    saved = json.loads((out / "config.json").read_text())
    assert saved["algorithm"] == "fpl" and saved["resolved"]["flower"]["min_clients"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 2

    # Same seed, same numbers as `protofl run` in this process.
    from protofl.api import run

    threads = torch.get_num_threads()
    try:
        simulated = run(dataclasses.replace(config, out=None), write=False)
    finally:
        torch.set_num_threads(threads)
    for record, expected in zip(rounds, simulated.history, strict=True):
        assert record["per_domain_accuracy"] == expected.per_domain_accuracy
        assert record["train"] == pytest.approx(expected.train, rel=1e-6)
        assert expected.validation_accuracy is not None
        assert record["validation_accuracy"] == expected.validation_accuracy


@pytest.mark.slow
@pytest.mark.flower_e2e
def test_a_killed_supernode_does_not_hang_the_server(
    deployment: Deployment, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    config = dataclasses.replace(TINY, rounds=1, out=str(out))
    round_timeout = 25.0
    app = write_tiny_app(
        tmp_path / "app",
        config,
        num_nodes=2,
        min_clients=1,
        node_timeout=60,
        round_timeout=round_timeout,
    )
    deployment.start_superlink()
    deployment.start_supernode(0)
    deployment.start_supernode(1)
    started = time.monotonic()
    run = deployment.run_app(app, timeout=180)
    deadline = time.monotonic() + 120
    while "Start `flwr-clientapp`" not in deployment.log("node1"):  # node 1 is training
        if time.monotonic() > deadline or run.poll() is not None:
            pytest.fail(f"node 1 never started training:\n{deployment.log('node1')[-3000:]}")
        time.sleep(0.2)
    deployment.kill("node1")  # SIGKILL to the SuperNode and its children, mid-round
    output = finish(run, 180, deployment)

    rounds = read_metrics(out)
    assert [r["round"] for r in rounds] == [1], output[-4000:]
    assert list(rounds[0]["clients"]) == ["handwritten-0"]  # type: ignore[call-overload]
    assert rounds[0]["absent"] == ["client 1"]  # never seen before it died: named by index
    assert "no reply within" in output or "failed (error" in output, output[-4000:]
    assert time.monotonic() - started < 120 + round_timeout


@pytest.mark.slow
@pytest.mark.flower_e2e
def test_a_killed_superlink_restarts_and_the_run_resumes_to_the_same_metrics(
    deployment: Deployment, tmp_path: Path
) -> None:
    """SIGKILL the SuperLink (and with it the ServerApp) after round 2 of 4, restart it and
    the SuperNodes, resubmit with flower.resume=true: the rounds equal an uninterrupted run's."""
    from protofl.api import run

    config = dataclasses.replace(TINY, rounds=4)
    reference = run(dataclasses.replace(config, out=str(tmp_path / "reference")))
    out = tmp_path / "results"
    # generous timeouts: restarted SuperNodes may take a while to register on a busy machine
    settings = {"num_nodes": 2, "min_clients": 2, "node_timeout": 180, "round_timeout": 120}
    app = write_tiny_app(tmp_path / "app", dataclasses.replace(config, out=str(out)), **settings)
    deployment.start_superlink()
    deployment.start_supernode(0)
    deployment.start_supernode(1)
    first = deployment.run_app(app, timeout=240)
    deadline = time.monotonic() + 180
    while not (out / "checkpoint.pt").exists() or len(read_metrics(out)) < 2:
        if time.monotonic() > deadline or first.poll() is not None:
            pytest.fail(f"no round 2 checkpoint:\n{deployment.log('superlink')[-3000:]}")
        time.sleep(0.2)
    for name in ("superlink", "flwr-run", "node0", "node1"):
        deployment.kill(name)  # the SuperNodes would die anyway (401 on their next heartbeat)
    first.wait(timeout=30)
    # The ServerApp is not in the SuperLink's process group and outlives it (15 s and more),
    # holding the run folder's lock; end it by the pid the lock names and wait until it is
    # gone, or the restarted ServerApp would be refused the folder.
    end_lock_holder(out)
    assert len(read_metrics(out)) < 4
    deployment.start_superlink()
    deployment.start_supernode(0)
    deployment.start_supernode(1)
    again = write_tiny_app(
        tmp_path / "app2", dataclasses.replace(config, out=str(out)), **settings, resume=True
    )
    output = finish(deployment.run_app(again, timeout=420), 420, deployment)
    rounds = read_metrics(out)
    assert [r["round"] for r in rounds] == [1, 2, 3, 4], output[-4000:]
    for got, want in zip(rounds, reference.history, strict=True):
        accuracy = got["per_domain_accuracy"]
        assert accuracy == pytest.approx(want.per_domain_accuracy, abs=1e-9)
        assert got["train"] == pytest.approx(want.train, rel=1e-5)
