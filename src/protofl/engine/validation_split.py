"""A validation split held out of the clients' own training data.

``validation_fraction`` of every client's samples, class by class (seeded per client, so the
split is the same on every run and does not depend on the client order), is taken out of its
training indices; the held-out samples of a domain's clients form that domain's validation
set, which the round loop scores with the global model each round (on Flower each node
scores its own share, kept in ``client_validation``, and the server adds up the counts).
Choices of method and option are then made on validation accuracy, and the test set is
looked at once.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np
import torch

from protofl.core.seeding import derive_seed
from protofl.engine.data import ClientData, Federation, TensorSet, TestSet
from protofl.errors import DataError

MIN_TRAINING = 2  # a client keeps at least this many samples (BatchNorm needs 2 per batch)


def held_out_positions(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Positions (into ``labels``) to hold out: ``floor(fraction * n_c)`` of each class c,
    drawn without replacement by a generator seeded with ``seed``; sorted."""
    rng = np.random.default_rng(seed)
    taken = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        count = int(np.floor(fraction * len(members)))
        if count:
            taken.append(rng.choice(members, size=count, replace=False))
    return np.sort(np.concatenate(taken)) if taken else np.zeros(0, dtype=np.int64)


def split_validation(federation: Federation, fraction: float, seed: int) -> Federation:
    """``federation`` with ``fraction`` of each client's data moved into per-domain
    validation sets (unchanged when ``fraction`` is 0)."""
    if fraction <= 0:
        return federation
    clients: list[ClientData] = []
    held: dict[str, list[TensorSet]] = defaultdict(list)
    own: list[tuple[str, TestSet]] = []
    transforms = {}
    for client in federation.clients:
        labels = client.source.labels[client.indices].cpu().numpy()
        positions = held_out_positions(
            labels, fraction, derive_seed(seed, "validation", client.client_id)
        )
        keep = np.setdiff1d(np.arange(len(labels)), positions)
        if len(keep) < MIN_TRAINING:
            raise DataError(
                f"client {client.client_id}: validation_fraction {fraction} leaves it "
                f"{len(keep)} training sample(s) of {len(labels)}; lower validation_fraction."
            )
        where = client.indices.device
        kept = client.indices[torch.from_numpy(keep).to(where)]
        out = client.indices[torch.from_numpy(positions).to(where)]
        clients.append(dataclasses.replace(client, indices=kept))
        part = TensorSet(client.source.inputs[out], client.source.labels[out])
        held[client.domain].append(part)
        if len(part):
            own.append((client.client_id, TestSet(client.domain, part, client.transform)))
        transforms[client.domain] = client.transform
    validation = tuple(
        TestSet(
            domain,
            TensorSet(torch.cat([p.inputs for p in parts]), torch.cat([p.labels for p in parts])),
            transforms[domain],
        )
        for domain, parts in held.items()
        if sum(len(p) for p in parts)
    )
    return dataclasses.replace(
        federation,
        clients=tuple(clients),
        validation_sets=validation,
        client_validation=tuple(own),
    )
