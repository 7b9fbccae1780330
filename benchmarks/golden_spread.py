"""How far the recorded golden runs move across CPU kernel choices: the measurement behind
the tolerances in tests/golden_runs.py.

Each kernel setting runs every algorithm's golden federation (tests/golden_runs.py's config,
one thread) in a fresh process with ATen's CPU capability and oneDNN's ISA capped, and the
result is compared with the recorded file: the largest relative difference of a train metric
and the largest accuracy difference in test samples. Prints a table, writes JSON.

    python benchmarks/golden_spread.py benchmarks/results/golden_spread.json
    python benchmarks/golden_spread.py out.json --precision fp32   # the old recording dtype
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from protofl.outputs.run_folder import cpu_model

ROOT = Path(__file__).resolve().parents[1]
KERNELS = {  # name -> environment; "native" lets torch pick the best the CPU has
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}


def run_all(precision: str) -> dict[str, list[dict[str, Any]]]:
    """In this process: every algorithm's golden run as records (called in the child)."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from protofl import train_federated
    from protofl.algorithms import ALGORITHMS

    from golden_runs import as_records, golden_config
    from tiny_data import TinyNet, tiny_clients

    torch.set_num_threads(1)
    out = {}
    for name in ALGORITHMS.names():
        clients, tests = tiny_clients()
        torch.manual_seed(0)
        config = golden_config(name, precision=precision)
        out[name] = as_records(train_federated(clients, tests, TinyNet(), config).history)
    return out


def deviations(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> dict[str, Any]:
    worst_rel, worst_key, worst_samples = 0.0, "", 0.0
    for g, w in zip(got, want, strict=True):
        for key, value in w["train"].items():
            rel = abs(g["train"][key] - value) / max(abs(value), 1e-12)
            if rel > worst_rel:
                worst_rel, worst_key = rel, f"round {w['round']} {key}"
        for domain, value in w["accuracy"].items():
            worst_samples = max(worst_samples, abs(g["accuracy"][domain] - value) * 64)
    same_protos = all(g["prototypes"] == w["prototypes"] for g, w in zip(got, want, strict=True))
    return {
        "train_max_rel": worst_rel,
        "train_worst": worst_key,
        "accuracy_max_samples": worst_samples,
        "prototype_counts_equal": same_protos,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--precision", default="fp64")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.out.write_text(json.dumps(run_all(args.precision)))
        return
    golden = {
        p.name.removesuffix("_tiny.json"): json.loads(p.read_text())
        for p in sorted((ROOT / "tests" / "golden").glob("*_tiny.json"))
    }
    table: dict[str, dict[str, Any]] = {}
    for kernel, env in KERNELS.items():
        part = args.out.with_suffix(f".{kernel}.tmp")
        command = [sys.executable, __file__, str(part), "--child", "--precision", args.precision]
        subprocess.run(command, check=True, env={**os.environ, **env, "OMP_NUM_THREADS": "1"})
        runs = json.loads(part.read_text())
        part.unlink()
        for name, want in golden.items():
            table.setdefault(name, {})[kernel] = deviations(runs[name], want)
    print(f"{'algorithm':<24}" + "".join(f"{k + ' rel':>12}{'samples':>9}" for k in KERNELS))
    for name, row in table.items():
        cells = "".join(
            f"{row[k]['train_max_rel']:>12.1e}{row[k]['accuracy_max_samples']:>9.0f}"
            for k in KERNELS
        )
        print(f"{name:<24}{cells}")
    worst = max(c["train_max_rel"] for row in table.values() for c in row.values())
    worst_samples = max(c["accuracy_max_samples"] for row in table.values() for c in row.values())
    print(
        f"largest relative train difference {worst:.1e}; largest accuracy difference "
        f"{worst_samples:.0f} test samples"
    )
    machine = {"cpu": cpu_model(), "python": platform.python_version()}
    result = {
        "precision": args.precision,
        "machine": machine,
        "kernels": KERNELS,
        "runs": table,
        "train_max_rel": worst,
        "accuracy_max_samples": worst_samples,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
