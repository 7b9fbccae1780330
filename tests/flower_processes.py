"""Flower as real processes, for the end-to-end tests: a SuperLink and SuperNodes on loopback
(each in its own session, its process group killed at the end), the tiny benchmark app, and
the run folder's metrics. Imported by the tests under tests/integration/ (pytest puts tests/
on sys.path), so that no test module imports another."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

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
