"""Peak memory of one Flower node's set-up on a real benchmark: a SuperNode building its
client (``client_from_config``) and the ServerApp building its side (``server_from_config``),
each in a fresh process, as peak RSS. Prints a table and writes JSON.

    python benchmarks/node_memory.py --data-dir ../shared/data --label after \\
        --out benchmarks/results/node_memory.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, resource, sys
import torch
torch.set_num_threads(1)
from protofl.config import build_config, load_preset
from protofl.algorithms import ALGORITHMS
values = {**load_preset(sys.argv[2]), "data_dir": sys.argv[3]}
if sys.argv[4]:
    values["domains"] = sys.argv[4]
config = build_config(values, ALGORITHMS.names())
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if sys.argv[1] == "server":
    from protofl.flower.server import server_from_config
    setup = server_from_config(config)
    held = sum(len(t.data) for t in setup.test_sets)
else:
    from protofl.flower.client import client_from_config
    setup = client_from_config(config, int(sys.argv[1]))
    held = len(setup.data.source)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
row = {"peak_rss_mb": peak / 1024, "after_imports_mb": before / 1024, "samples_held": held}
print(json.dumps(row))
"""


def measure(role: str, preset: str, data_dir: str, domains: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, role, preset, data_dir, domains],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--preset", default="paper-office")
    parser.add_argument("--label", required=True, help="e.g. before / after a change")
    parser.add_argument("--clients", default="0,5,9", help="client indices to measure")
    parser.add_argument("--domains", default="", help="a subset of the benchmark's domains")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/node_memory.json"))
    args = parser.parse_args()
    rows = {"server": measure("server", args.preset, args.data_dir, args.domains)}
    for index in args.clients.split(","):
        rows[f"client {index}"] = measure(index, args.preset, args.data_dir, args.domains)
    print(f"{args.label}: peak RSS per node ({args.preset})")
    print(f"{'node':<10} {'peak MB':>9} {'after imports MB':>17} {'samples held':>13}")
    for node, row in rows.items():
        print(
            f"{node:<10} {row['peak_rss_mb']:9.0f} {row['after_imports_mb']:17.0f} "
            f"{int(row['samples_held']):13d}"
        )
    saved = json.loads(args.out.read_text()) if args.out.exists() else {}
    saved[args.label] = {"preset": args.preset, "domains": args.domains or "all", "nodes": rows}
    args.out.write_text(json.dumps(saved, indent=2) + "\n")


if __name__ == "__main__":
    main()
