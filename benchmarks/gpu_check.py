"""Does protofl work on this GPU? A check of a few minutes on one CUDA device.

Each row runs something real on the GPU and says PASS or FAIL with what it measured:

- every registered algorithm, 2 rounds on the embedded benchmark (FedHEAL included);
- prototype privacy on (clipping and secret noise), for FPL;
- two runs with ``deterministic=true`` compared bit for bit;
- a run interrupted after round 1 and resumed, against the uninterrupted one (deterministic);
- host syncs during one training round, counted with ``torch.cuda.set_sync_debug_mode``;
- Flower's simulation engine: the clients train on the GPU too;
- with ``--data-dir``: one paper-protocol round of FPL on Office-Caltech (10 local epochs),
  on the GPU and on the CPU, side by side.

Prints one table and writes JSON. Without a CUDA GPU it says so and exits 0.
``--device cpu`` runs the same rows on the CPU (the sync count needs CUDA and is left out):
a dry run of the script itself before a GPU's minutes are spent on it.

    python benchmarks/gpu_check.py benchmarks/results/gpu_check.json [--data-dir ../shared/data]
    python benchmarks/gpu_check.py /tmp/dry.json --device cpu
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import platform
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

SMALL = {
    "rounds": 2,
    "local_epochs": 1,
    "domains": ("handwritten", "synthetic"),
    "clients_per_domain": {"handwritten": 1, "synthetic": 1},
    "client_fraction": 0.1,
    "device": "cuda",
}


def small(**changes: Any) -> Any:
    from protofl import RunConfig

    return RunConfig(**{**SMALL, **changes})


def check(rows: list[dict[str, Any]], name: str, body: Callable[[], str]) -> None:
    """Run one row; its body returns what it measured, or raises."""
    started = time.perf_counter()
    try:
        detail, status = body(), "PASS"
    except Exception as err:  # a failed row is the result; go on with the others
        detail, status = f"{type(err).__name__}: {err}"[:300], "FAIL"
        traceback.print_exc()
    seconds = time.perf_counter() - started
    rows.append({"check": name, "status": status, "seconds": round(seconds, 1), "detail": detail})
    print(f"{status}  {name:<44} {seconds:7.1f} s  {detail}", flush=True)


def algorithm_rows(rows: list[dict[str, Any]]) -> None:
    from protofl import run
    from protofl.algorithms import ALGORITHMS

    for name in ALGORITHMS.names():

        def body(name: str = name) -> str:
            result = run(small(algorithm=name), write=False)
            return f"mean accuracy {result.summary['mean_accuracy']:.4f}"

        check(rows, f"{name}, 2 rounds on {SMALL['device']}", body)


def privacy_row(rows: list[dict[str, Any]]) -> None:
    from protofl import run

    def body() -> str:
        config = small(privacy_clip_norm=1.0, privacy_noise_multiplier=0.5)
        result = run(config, write=False)
        return f"epsilon {result.history[-1].privacy_epsilon:.2f}"

    check(rows, "fpl with prototype privacy", body)


def determinism_rows(rows: list[dict[str, Any]], folder: Path) -> None:
    from protofl import run
    from protofl.api import resume

    def same_twice() -> str:
        first = run(small(deterministic=True), write=False).history
        second = run(small(deterministic=True), write=False).history
        if [r.train for r in first] != [r.train for r in second]:
            raise AssertionError("two deterministic runs differ")
        return "train metrics equal bit for bit"

    check(rows, "deterministic=true: two runs equal", same_twice)

    def resumed() -> str:
        class StopAfterOne:
            def round_started(self, index: int, rounds: int) -> None:
                if index > 1:
                    raise KeyboardInterrupt

            def client_finished(self, index: int, client: str) -> None: ...

            def round_finished(self, record: Any) -> None: ...

        config = small(deterministic=True, rounds=3, out=str(folder / "resumed"))
        with contextlib.suppress(KeyboardInterrupt):
            run(config, observer=StopAfterOne())
        finished = resume(folder / "resumed").history
        whole = run(dataclasses.replace(config, out=str(folder / "whole"))).history
        strip = ("train_seconds", "eval_seconds")
        got = [{k: v for k, v in dataclasses.asdict(r).items() if k not in strip} for r in finished]
        want = [{k: v for k, v in dataclasses.asdict(r).items() if k not in strip} for r in whole]
        if got != want:
            raise AssertionError("the resumed run differs from the uninterrupted one")
        return "3 rounds, resumed after round 1: equal to uninterrupted"

    check(rows, "resume after an interruption", resumed)


def sync_row(rows: list[dict[str, Any]]) -> None:
    from protofl.builders import prepare

    def body() -> str:
        simulation, _ = prepare(small(rounds=3))
        simulation.step(10**6)  # warm-up: CUDA context, cuDNN heuristics, prototypes present
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                simulation.step(10**6)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
        clients = len(simulation.federation.clients)
        return f"{len(syncs)} host syncs in one round of {clients} clients"

    check(rows, "host syncs per round (FPL)", body)


def flower_row(rows: list[dict[str, Any]]) -> None:
    def body() -> str:
        from protofl.flower.simulation import simulate

        result = simulate(small(device="auto"), write=False)
        device = next(result.strategy.setup.model.parameters()).device
        return f"server on {device}; mean accuracy {result.summary['mean_accuracy']:.4f}"

    check(rows, "Flower simulation, clients with GPU shares", body)


def paper_round_row(rows: list[dict[str, Any]], data_dir: str, cpu_too: bool) -> None:
    from protofl.algorithms import ALGORITHMS
    from protofl.builders import prepare
    from protofl.config import build_config, load_preset

    def one_round(device: str) -> float:
        values = {**load_preset("paper-office"), "data_dir": data_dir, "device": device}
        config = build_config(values, ALGORITHMS.names())
        simulation, _ = prepare(config)
        started = time.perf_counter()
        simulation.step(config.rounds)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    def body() -> str:
        gpu = one_round("cuda")
        if not cpu_too:
            return f"GPU {gpu:.1f} s a round (CPU not timed)"
        cpu = one_round("cpu")
        return f"GPU {gpu:.1f} s, CPU {cpu:.1f} s a round: {cpu / gpu:.1f}x"

    check(rows, "paper-protocol FPL round, GPU vs CPU", body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="JSON file to write")
    parser.add_argument("--data-dir", help="folder with the Office-Caltech files")
    parser.add_argument("--no-cpu", action="store_true", help="do not time the CPU round")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args()
    SMALL["device"] = args.device
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU here (torch.cuda.is_available() is False): nothing checked.")
        return 0
    folder = args.out.with_suffix(".runs")
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    algorithm_rows(rows)
    privacy_row(rows)
    determinism_rows(rows, folder)
    if args.device == "cuda":
        sync_row(rows)
    flower_row(rows)
    if args.data_dir and args.device == "cuda":
        paper_round_row(rows, args.data_dir, cpu_too=not args.no_cpu)
    on_gpu = args.device == "cuda"
    machine = {
        "gpu": torch.cuda.get_device_name() if on_gpu else "none (dry run on the CPU)",
        "capability": list(torch.cuda.get_device_capability()) if on_gpu else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
    }
    failed = [r["check"] for r in rows if r["status"] == "FAIL"]
    args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")
    print(f"\n{len(rows) - len(failed)} of {len(rows)} checks passed on {machine['gpu']}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
