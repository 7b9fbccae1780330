"""Federated training on your own arrays and your own model: two toy domains, FPL, 5 rounds.

python examples/own_arrays.py
"""

import numpy as np
import torch
from torch import nn

from protofl import ClientArrays, RunConfig, train_federated

rng = np.random.default_rng(0)


def domain(scale: float, shift: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Toy data: the class is the sign of feature 0; domains scale it and shift feature 1."""
    x = rng.normal(size=(n, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    return x * [scale, 1.0] + [0.0, shift], y


class Net(nn.Module):
    """Any model works if it splits into features(x) -> [B, D] and head(z) -> [B, C]."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, 32), nn.ReLU())
        self.out = nn.Linear(32, 2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(z)


(x_a, y_a), (x_b, y_b) = domain(1.0, 0.0, 400), domain(3.0, 4.0, 400)
(xt_a, yt_a), (xt_b, yt_b) = domain(1.0, 0.0, 200), domain(3.0, 4.0, 200)
y_b = np.eye(2)[y_b]  # one-hot labels work too
clients = [ClientArrays(x_a, y_a, domain="a"), ClientArrays(x_b, y_b, domain="b")]
config = RunConfig(algorithm="fpl", rounds=5, local_epochs=2, batch_size=32, lr=0.05)
result = train_federated(clients, {"a": (xt_a, yt_a), "b": (xt_b, yt_b)}, Net, config)
# Net, not Net(): protofl builds the model under the run's seed.
print(result.summary["per_domain_accuracy"], result.summary["mean_accuracy"])
