"""End to end on Flower: a real SuperLink and SuperNodes as separate processes on loopback.

Every process is started in its own session and its whole process group is killed when the
test ends, passed or failed (SuperNodes spawn SuperExec and ClientApp children). Also here:
importing protofl and running the simulator never imports flwr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from protofl import RunConfig
from protofl.flower.project import OFFLINE_ENV as FLOWER_ENV

BIN = Path(sys.executable).parent
# Small enough for CI: two domains, one client each with 5% of the domain, one epoch.
TINY = RunConfig(
    rounds=2,
    local_epochs=1,
    batch_size=32,
    domains=("handwritten", "synthetic"),
    clients_per_domain={"handwritten": 1, "synthetic": 1},
    client_fraction=0.05,
    eval_batch_size=500,
    threads=1,  # two SuperNodes and a SuperLink share the machine's cores
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Deployment:
    """Starts Flower processes, each in a new session; :meth:`stop` kills their groups."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.link_port = free_port()

    def start(self, name: str, *command: str) -> subprocess.Popen[bytes]:
        home = self.root / name
        home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **FLOWER_ENV, "FLWR_HOME": str(home)}
        log = (self.root / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [str(BIN / command[0]), *command[1:]],
            cwd=home,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, children included
        )
        self.processes[name] = process
        return process

    def start_superlink(self) -> None:
        self.start(
            "superlink",
            "flower-superlink",
            "--insecure",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.link_port),
        )
        wait_for_health(f"http://127.0.0.1:{self.link_port}/health", self, "superlink")

    def start_supernode(self, partition: int) -> None:
        self.start(
            f"node{partition}",
            "flower-supernode",
            "--insecure",
            "--superlink",
            f"127.0.0.1:{self.link_port}",
            "--port",
            str(free_port()),
            "--node-config",
            f"partition-id={partition}",
        )

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes[name]
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return

    def stop(self) -> None:
        for name in self.processes:
            self.kill(name, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for name, process in self.processes.items():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            self.kill(name, signal.SIGKILL)  # the group: SuperExec and ClientApp children too
            process.wait(timeout=10)

    def run_app(self, app: Path, timeout: float) -> subprocess.Popen[str]:
        home = self.root / "cli"
        home.mkdir(exist_ok=True)
        (home / "config.toml").write_text(
            '[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\n'
            f'address = "127.0.0.1:{self.link_port}"\ninsecure = true\n'
        )
        env = {**os.environ, **FLOWER_ENV, "FLWR_HOME": str(home)}
        process = subprocess.Popen(
            [str(BIN / "flwr"), "run", str(app), "loopback", "--stream"],
            cwd=self.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.processes["flwr-run"] = process  # type: ignore[assignment]
        return process


def wait_for_health(url: str, deployment: Deployment, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"{name} did not answer {url} within {timeout} s:\n{deployment.log(name)[-3000:]}")


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    if importlib.util.find_spec("flwr") is None or not (BIN / "flower-superlink").exists():
        pytest.skip("Flower is not installed (pip install protofl[flower]); no deployment test.")
    running = Deployment(tmp_path / "flower")
    try:
        yield running
    finally:
        running.stop()


def write_tiny_app(folder: Path, config: RunConfig, **settings: float) -> Path:
    from protofl.flower.project import write_app
    from protofl.flower.settings import FlowerSettings

    return write_app(folder, config, FlowerSettings(**settings)).parent  # type: ignore[arg-type]


def finish(process: subprocess.Popen[str], timeout: float, deployment: Deployment) -> str:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        logs = {n: deployment.log(n)[-1500:] for n in deployment.processes if n != "flwr-run"}
        pytest.fail(f"flwr run did not finish within {timeout} s:\n{output[-4000:]}\n{logs}")
    return output


def end_lock_holder(out: Path, timeout: float = 30) -> None:
    """SIGKILL the process named in ``out``'s run-folder lock and wait until it has exited."""
    from protofl.outputs.run_folder import LOCK, lock_holder_pid

    pid = lock_holder_pid(out / LOCK)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() > deadline:
            pytest.fail(f"process {pid} holding {out} did not exit within {timeout} s")
        time.sleep(0.1)


def process_alive(pid: int) -> bool:
    """Running, and not a zombie (a zombie has closed its files, the lock with them)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "\nState:\tZ" not in status


def read_metrics(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


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
