"""Adding an algorithm: FedAvg plus a penalty on the feature norm, registered and run.

    python examples/custom_algorithm.py

The algorithm is one subclass of ``Algorithm`` that overrides only what differs from FedAvg
(here: one extra loss term on the client), an options dataclass checked when it is built,
and one registry line. The local loop, the round loop, the result files and the command line
need no change.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from protofl import ClientArrays, RunConfig, train_federated
from protofl.algorithms import ALGORITHMS, Algorithm, AlgorithmSpec, ClientRound, LocalStep
from protofl.algorithms.hooks import ClientStart
from protofl.errors import ConfigError


@dataclass(frozen=True)
class FeatureDecayConfig:
    weight: float = 0.01  # how strongly large features are penalised

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ConfigError(f"feature-decay.weight must be >= 0; got {self.weight}.")


class FeatureDecayRound(ClientRound):
    def __init__(self, weight: float) -> None:
        self.weight = weight

    def loss_terms(self, step: LocalStep) -> dict[str, torch.Tensor]:
        # Each term is added to the cross-entropy and logged under its name.
        return {"feature_decay": self.weight * step.features.pow(2).sum(dim=1).mean()}


class FeatureDecay(Algorithm):
    name = "feature-decay"
    config: FeatureDecayConfig

    def start_client(self, start: ClientStart) -> FeatureDecayRound:
        return FeatureDecayRound(self.config.weight)


if "feature-decay" not in ALGORITHMS:
    ALGORITHMS.add(
        "feature-decay",
        AlgorithmSpec("feature-decay", FeatureDecayConfig, FeatureDecay, "FedAvg + feature decay"),
    )

rng = np.random.default_rng(0)


def domain(shift: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    return x + shift, y


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 16), nn.ReLU())
        self.out = nn.Linear(16, 2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(z)


clients = [ClientArrays(*domain(0.0, 300), domain="a"), ClientArrays(*domain(2.0, 300), domain="b")]
tests = {"a": domain(0.0, 200), "b": domain(2.0, 200)}
config = RunConfig(
    algorithm="feature-decay",
    algorithm_options={"feature-decay": {"weight": 0.001}},
    rounds=3,
    local_epochs=2,
    batch_size=32,
    lr=0.05,
)
result = train_federated(clients, tests, Net, config)
print("loss terms:", sorted(result.history[-1].train))
print("mean accuracy:", result.summary["mean_accuracy"])
