"""In-memory datasets for the loops: samples stored once, clients hold index tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


class BatchTransform(Protocol):
    """Turns a stored batch into model input, with augmentation at train time."""

    def train(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...

    def eval(self, batch: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True, eq=False)
class TensorSet:
    """Samples and int64 labels (already through the label gate), on one device."""

    inputs: torch.Tensor  # [N, ...]
    labels: torch.Tensor  # [N] int64

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> TensorSet:
        return TensorSet(self.inputs.to(device), self.labels.to(device))


@dataclass(frozen=True, eq=False)
class ClientData:
    """One client's training data: a view (indices) into its domain's shared samples."""

    client_id: str
    domain: str
    source: TensorSet
    indices: torch.Tensor  # [n] int64 into source
    transform: BatchTransform

    def __len__(self) -> int:
        return int(self.indices.shape[0])


@dataclass(frozen=True, eq=False)
class TestSet:
    """A domain's full test split, evaluated with the global model."""

    domain: str
    data: TensorSet
    transform: BatchTransform


@dataclass(frozen=True, eq=False)
class Federation:
    """Everything a simulation trains and evaluates on."""

    clients: tuple[ClientData, ...]
    test_sets: tuple[TestSet, ...]
    num_classes: int
    # per domain, the samples held out of the clients' training data (validation_fraction)
    validation_sets: tuple[TestSet, ...] = ()
    # per held-out domain (holdout_domains), all of its samples: a domain no client holds
    holdout_sets: tuple[TestSet, ...] = ()
    # per client id, its own share of validation_sets (what a Flower node scores itself)
    client_validation: tuple[tuple[str, TestSet], ...] = ()

    def to(self, device: torch.device | str) -> Federation:
        """Move every sample to ``device`` once (each shared source is moved only once)."""
        moved: dict[int, TensorSet] = {}

        def move(tensor_set: TensorSet) -> TensorSet:
            key = id(tensor_set)
            if key not in moved:
                moved[key] = tensor_set.to(device)
            return moved[key]

        clients = tuple(
            ClientData(c.client_id, c.domain, move(c.source), c.indices.to(device), c.transform)
            for c in self.clients
        )
        tests = tuple(TestSet(t.domain, move(t.data), t.transform) for t in self.test_sets)
        held = tuple(TestSet(t.domain, move(t.data), t.transform) for t in self.validation_sets)
        unseen = tuple(TestSet(t.domain, move(t.data), t.transform) for t in self.holdout_sets)
        own = tuple(
            (client_id, TestSet(t.domain, move(t.data), t.transform))
            for client_id, t in self.client_validation
        )
        return Federation(clients, tests, self.num_classes, held, unseen, own)
