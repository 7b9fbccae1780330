"""Seconds per round of the deployment example (FPL, 2 embedded clients, 5 local epochs,
threads=1) on loopback, beside the in-process simulator on the same work: a SuperLink and
two SuperNodes are started here, ``flwr run`` submits the app, and each round's
``train_seconds + eval_seconds`` is read from both runs' ``metrics.jsonl``.

    python benchmarks/flower_round.py --rounds 3 --json benchmarks/results/flower_round.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from protofl import RunConfig
from protofl.api import run
from protofl.flower.project import OFFLINE_ENV, write_app
from protofl.flower.settings import FlowerSettings

BIN = Path(sys.executable).parent
ENV = OFFLINE_ENV


def port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(root: Path, name: str, *command: str) -> subprocess.Popen[bytes]:
    home = root / name
    home.mkdir(parents=True, exist_ok=True)
    log = (root / f"{name}.log").open("wb")
    return subprocess.Popen(
        [str(BIN / command[0]), *command[1:]],
        cwd=home,
        env={**os.environ, **ENV, "FLWR_HOME": str(home)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def per_round(out: Path) -> list[float]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["train_seconds"] + json.loads(x)["eval_seconds"] for x in lines]


def deployment_rounds(config: RunConfig, root: Path) -> tuple[list[float], float]:
    link = port()
    processes = [
        start(
            root,
            "superlink",
            "flower-superlink",
            "--insecure",
            "--host",
            "127.0.0.1",
            "--port",
            str(link),
        )
    ]
    time.sleep(5)
    for partition in (0, 1):
        processes.append(
            start(
                root,
                f"node{partition}",
                "flower-supernode",
                "--insecure",
                "--superlink",
                f"127.0.0.1:{link}",
                "--port",
                str(port()),
                "--node-config",
                f"partition-id={partition}",
            )
        )
    app = write_app(root / "app", config, FlowerSettings(num_nodes=2, min_clients=2)).parent
    cli = root / "cli"
    cli.mkdir()
    (cli / "config.toml").write_text(
        f'[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\n'
        f'address = "127.0.0.1:{link}"\ninsecure = true\n'
    )
    started = time.perf_counter()
    try:
        subprocess.run(
            [str(BIN / "flwr"), "run", str(app), "loopback", "--stream"],
            env={**os.environ, **ENV, "FLWR_HOME": str(cli)},
            capture_output=True,
            check=True,
            timeout=900,
        )
        wall = time.perf_counter() - started
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGKILL)
    return per_round(Path(str(config.out))), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        base = RunConfig(
            rounds=args.rounds,
            domains=("handwritten", "synthetic"),
            clients_per_domain={"handwritten": 1, "synthetic": 1},
            threads=1,
        )
        started = time.perf_counter()
        simulated = run(RunConfig(**{**base.to_dict(), "out": str(root / "sim")}))
        sim_wall = time.perf_counter() - started
        sim_rounds = [r.train_seconds + r.eval_seconds for r in simulated.history]
        flower_out = RunConfig(**{**base.to_dict(), "out": str(root / "flower")})
        flower_rounds, flower_wall = deployment_rounds(flower_out, root)
    print(f"{'how':<28} {'seconds per round':<30} {'wall s':>7}")
    print(
        f"{'simulator (protofl run)':<28} {', '.join(f'{s:.1f}' for s in sim_rounds):<30} "
        f"{sim_wall:7.1f}"
    )
    print(
        f"{'deployment (2 SuperNodes)':<28} {', '.join(f'{s:.1f}' for s in flower_rounds):<30} "
        f"{flower_wall:7.1f}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "simulator_round_seconds": sim_rounds,
                    "simulator_wall": sim_wall,
                    "deployment_round_seconds": flower_rounds,
                    "deployment_wall": flower_wall,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
