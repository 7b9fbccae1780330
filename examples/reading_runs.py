"""Reading a run folder with pandas: per-round, per-domain accuracy and the loss terms.

    python examples/reading_runs.py [RUN_FOLDER]

Without a folder it first makes a small run of its own (two toy domains, 4 rounds) in a
temporary folder, with the same files that ``protofl run`` writes.
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from protofl import ClientArrays, RunConfig, train_federated


def small_run(folder: Path) -> Path:
    rng = np.random.default_rng(0)

    def domain(shift: float, n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(size=(n, 2)).astype(np.float32)
        return x + shift, (x[:, 0] > 0).astype(np.int64)

    def net() -> nn.Module:
        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.body, self.out = nn.Sequential(nn.Linear(2, 16), nn.ReLU()), nn.Linear(16, 2)

            def features(self, x: torch.Tensor) -> torch.Tensor:
                return self.body(x)

            def head(self, z: torch.Tensor) -> torch.Tensor:
                return self.out(z)

        return Net()

    clients = [
        ClientArrays(*domain(0.0, 200), domain="a"),
        ClientArrays(*domain(3.0, 200), domain="b"),
    ]
    config = RunConfig(rounds=4, local_epochs=1, batch_size=32, lr=0.05, out=str(folder))
    train_federated(
        clients, {"a": domain(0.0, 100), "b": domain(3.0, 100)}, net, config, write=True
    )
    return folder


def load_rounds(folder: Path) -> pd.DataFrame:
    """One row per round: the mean accuracy, each domain's, and each loss term."""
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    frame = pd.json_normalize(records)
    columns = ["round", "mean_accuracy"]
    columns += [c for c in frame.columns if c.startswith(("per_domain_accuracy.", "train."))]
    return frame[columns].set_index("round")


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else small_run(Path(tempfile.mkdtemp()) / "run")
    rounds = load_rounds(folder)
    config = json.loads((folder / "config.json").read_text())
    data = config["resolved"].get("data_source", config["benchmark"])  # own arrays or a benchmark
    print(f"{config['algorithm']} on {data}, domains {config['resolved']['domains']}:")
    print(f"{len(rounds)} rounds")
    print(rounds.round(3).to_string())
    print("last 5 rounds, mean accuracy:", round(rounds["mean_accuracy"].tail(5).mean(), 4))
