"""Peak memory of a Digits simulation as the number of clients grows.

Each point is a fresh process running one FPL round with ResNet-10 on MNIST + USPS (the
domains in the shared data folder), half the clients on each domain. Memory should grow
with the clients only by what they keep (index tensors, client-only state), not by a model
or a dataset copy per client: a ResNet-10 state is 19.6 MB, so a copy per client would add
that much per client. Peak RSS from getrusage.

    python benchmarks/memory.py --data-dir ../shared/data [--clients 4 10 20 40] [--json F]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, resource, sys
from protofl import RunConfig, run
clients, data_dir, algorithm = int(sys.argv[1]), sys.argv[2], sys.argv[3]
config = RunConfig(benchmark="digits", domains=("mnist", "usps"), data_dir=data_dir,
                   algorithm=algorithm, model="resnet10", rounds=1, local_epochs=1,
                   clients_per_domain={"mnist": clients // 2, "usps": clients - clients // 2},
                   client_fraction=0.002)
run(config, write=False)
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(clients: int, data_dir: str, algorithm: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(clients), data_dir, algorithm],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--clients", type=int, nargs="+", default=[4, 10, 20, 40])
    parser.add_argument("--algorithms", nargs="+", default=["fpl", "moon"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    print(f"{'algorithm':<10}{'clients':>8}{'peak RSS MB':>14}{'MB / extra client':>20}")
    for algorithm in args.algorithms:
        previous = None
        for clients in args.clients:
            peak = measure(clients, args.data_dir, algorithm)
            slope = (
                "" if previous is None else f"{(peak - previous[1]) / (clients - previous[0]):.1f}"
            )
            print(f"{algorithm:<10}{clients:>8}{peak:>14.0f}{slope:>20}")
            rows.append({"algorithm": algorithm, "clients": clients, "peak_rss_mb": peak})
            previous = (clients, peak)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "model_state_mb": 19.6}, indent=2) + "\n")


if __name__ == "__main__":
    main()
