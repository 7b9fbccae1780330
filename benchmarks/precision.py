"""fp32 vs the bf16 fast path on Office-Caltech: round time side by side, and accuracy.

Speed: FPL rounds alternate between an fp32 and a bf16 simulation (same clients, same
model, prototypes present) and the medians are compared; the full paper protocol
(100 rounds x 10 local epochs) is projected from the bf16 round time. Accuracy: complete
runs with the same seeds under both precisions.

    python benchmarks/precision.py --data-dir ../shared/data [--seeds 0 1] [--rounds 10]
        [--local-epochs 2] [--speed-rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from protofl import RunConfig, run
from protofl.builders import prepare
from protofl.engine.precision import native_bf16
from step_speed import machine


def round_times(config: RunConfig, rounds: int) -> dict[str, Any]:
    simulations = {p: prepare(replace(config, precision=p))[0] for p in ("fp32", "bf16")}
    for simulation in simulations.values():
        simulation.step(10**6)  # round 1 has no prototypes; time rounds that use them
    times: dict[str, list[float]] = {p: [] for p in simulations}
    evals: dict[str, list[float]] = {p: [] for p in simulations}
    for _ in range(rounds):
        for name, simulation in simulations.items():
            started = time.perf_counter()
            record = simulation.step(10**6)
            times[name].append(time.perf_counter() - started)
            evals[name].append(record.eval_seconds)
    fp32, bf16 = statistics.median(times["fp32"]), statistics.median(times["bf16"])
    return {
        "local_epochs": config.local_epochs,
        "round_seconds": {"fp32": fp32, "bf16": bf16},
        "eval_seconds": {p: statistics.median(v) for p, v in evals.items()},
        "speedup": fp32 / bf16,
        "samples": times,
    }


def projected_round_seconds(speed: dict[str, Any], local_epochs: int) -> float:
    """A bf16 round at ``local_epochs`` from one measured at ``speed["local_epochs"]``.

    Everything but evaluation (training, prototypes, aggregation, FINCH) is scaled by the
    epoch ratio, which slightly overstates the per-round server work; evaluation runs once.
    """
    evaluation = speed["eval_seconds"]["bf16"]
    training = speed["round_seconds"]["bf16"] - evaluation
    return training * local_epochs / speed["local_epochs"] + evaluation


def accuracy(config: RunConfig, seeds: list[int]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for precision in ("fp32", "bf16"):
        for seed in seeds:
            result = run(replace(config, precision=precision, seed=seed), write=False)
            results[f"{precision}/seed{seed}"] = {
                "mean_accuracy": result.summary["mean_accuracy"],
                "last_5_mean_accuracy": result.summary["last_5_rounds"]["mean_accuracy"],
                "per_domain_accuracy": result.summary["per_domain_accuracy"],
                "seconds": result.summary["timing"]["wall_seconds"],
            }
            print(precision, seed, json.dumps(results[f"{precision}/seed{seed}"]), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--local-epochs", type=int, default=2)
    parser.add_argument("--speed-rounds", type=int, default=3)
    parser.add_argument("--speed-epochs", type=int, default=1)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not native_bf16(torch.device("cpu")):
        print("note: this CPU has no native bf16; the bf16 path runs emulated and slowly")
    base = RunConfig(benchmark="office-caltech", data_dir=args.data_dir, algorithm="fpl")
    speed = round_times(replace(base, local_epochs=args.speed_epochs), args.speed_rounds)
    full_round = projected_round_seconds(speed, local_epochs=10)
    print(f"{'FPL round, office-caltech':<28}{'fp32 s':>9}{'bf16 s':>9}{'speed-up':>10}")
    rounds_s = speed["round_seconds"]
    print(
        f"{args.speed_epochs} local epoch(s){'':<13}{rounds_s['fp32']:>9.2f}"
        f"{rounds_s['bf16']:>9.2f}{speed['speedup']:>10.2f}"
    )
    print(f"projected paper protocol (100 x 10 epochs, bf16): {100 * full_round / 60:.0f} min")
    payload: dict[str, Any] = {
        "speed": speed,
        "projected_full_protocol_minutes": 100 * full_round / 60,
        "machine": machine(),
    }
    if not args.skip_accuracy:
        config = replace(base, rounds=args.rounds, local_epochs=args.local_epochs)
        payload["accuracy"] = accuracy(config, args.seeds)
        payload["accuracy_protocol"] = {"rounds": args.rounds, "local_epochs": args.local_epochs}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
