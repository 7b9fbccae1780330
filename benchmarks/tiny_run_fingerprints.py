"""Fingerprints of a 3-round tiny run of every registered algorithm (fp32, one thread): the
per-round records at full precision and a sha256 of the final weights. Record before a
refactor, record after, compare: equal fingerprints mean bit-identical behaviour.

    python benchmarks/tiny_run_fingerprints.py before.json
    python benchmarks/tiny_run_fingerprints.py after.json --compare before.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import torch

from protofl import RunConfig, train_federated
from protofl.algorithms import ALGORITHMS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tiny_data import TinyNet, tiny_clients


def fingerprint(name: str) -> dict[str, Any]:
    clients, tests = tiny_clients()
    torch.manual_seed(0)
    config = RunConfig(
        algorithm=name, rounds=3, local_epochs=2, batch_size=16, lr=0.05, seed=3, precision="fp32"
    )
    result = train_federated(clients, tests, TinyNet(), config)
    digest = hashlib.sha256()
    for key, value in sorted(result.state.weights.items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    records = [
        {
            "round": r.round,
            "acc": r.per_domain_accuracy,
            "train": r.train,
            "protos": r.num_prototypes,
        }
        for r in result.history
    ]
    return {"records": records, "weights_sha": digest.hexdigest()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--compare", type=Path, help="an earlier fingerprint file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    prints = {name: fingerprint(name) for name in ALGORITHMS.names()}
    args.out.write_text(json.dumps(prints, indent=1, sort_keys=True) + "\n")
    if args.compare:
        before = json.loads(args.compare.read_text())
        for name, old in before.items():
            print(f"{name:<24} {'identical' if prints.get(name) == old else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
