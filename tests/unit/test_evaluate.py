"""Scoring the global model: counts per domain, which add up over parts of a domain (what
the Flower server relies on when each node scores its own validation share)."""

from __future__ import annotations

import torch
from torch import nn

from protofl.engine.data import TensorSet
from protofl.engine.data import TestSet as DomainTest
from protofl.engine.evaluate import correct_counts, evaluate


class TopLeft(nn.Module):
    """Says class 1 exactly when the top-left value is positive, else class 0."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1, 0, 0]  # [B, 1]

    def head(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([-z, z], dim=1)


class Identity:
    def train(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return batch

    def eval(self, batch: torch.Tensor) -> torch.Tensor:
        return batch


def domain(name: str, signs: list[float], labels: list[int]) -> DomainTest:
    inputs = torch.zeros(len(signs), 1, 2, 2)
    inputs[:, 0, 0, 0] = torch.tensor(signs)
    return DomainTest(name, TensorSet(inputs, torch.tensor(labels)), Identity())


def test_counts_by_hand_and_their_sum_over_parts_is_the_whole() -> None:
    # predictions 1, 0, 1, 0, 1 against labels 1, 1, 1, 0, 0: three right of five
    whole = domain("d", [1.0, -1.0, 2.0, -3.0, 0.5], [1, 1, 1, 0, 0])
    assert correct_counts(TopLeft(), [whole], batch_size=2) == {"d": (3, 5)}
    assert evaluate(TopLeft(), [whole], batch_size=4) == {"d": 3 / 5}
    first = domain("d", [1.0, -1.0], [1, 1])
    rest = domain("d", [2.0, -3.0, 0.5], [1, 0, 0])
    parts = [correct_counts(TopLeft(), [p], batch_size=3)["d"] for p in (first, rest)]
    assert parts == [(1, 2), (2, 3)]
    assert tuple(map(sum, zip(*parts, strict=True))) == (3, 5)
