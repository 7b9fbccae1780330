"""FLTrust's server-side root set (Cao et al., NDSS 2021): a small sample of the clients'
training data the server trains on each round, drawn once, seeded.

The paper's server collects its root set itself; a simulation has to draw it from somewhere,
and drawing it uniformly from the pooled training data (never from test, validation or
held-out domains) gives it the clients' domain mix, as the paper's uniform draw from the
training set does. The samples stay in their clients' data too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from protofl.algorithms.base import Algorithm, AlgorithmContext
from protofl.core.payloads import ServerMessage, StateDict
from protofl.core.seeding import derive_seed, torch_generator
from protofl.engine.client import run_client_round
from protofl.engine.data import ClientData, TensorSet
from protofl.engine.local import Forward, LocalSettings
from protofl.engine.precision import FP32, Precision
from protofl.errors import ConfigError

ROOT_ID = "server-root"


def draw_root_set(
    clients: Sequence[ClientData], size: int, seed: int
) -> tuple[ClientData, dict[str, int]]:
    """``size`` samples drawn uniformly without replacement from all clients' training
    samples, as one :class:`ClientData` (the server's), with how many came from each domain."""
    total = sum(len(c) for c in clients)
    if size > total:
        raise ConfigError(
            f"root_size {size} is more than the {total} training samples of all clients; "
            "choose a smaller root_size."
        )
    transform = clients[0].transform
    if not all(same_pipeline(c.transform, transform) for c in clients):
        raise ConfigError(
            "fltrust pools samples from every client into the server's root set, which needs "
            "one input pipeline for all of them; these clients' pipelines differ."
        )
    inputs, labels = [], []
    per_domain: dict[str, int] = {}
    for index, offsets in root_positions([len(c) for c in clients], size, seed).items():
        client = clients[index]
        rows = client.indices[torch.tensor(offsets, device=client.indices.device)]
        inputs.append(client.source.inputs[rows])
        labels.append(client.source.labels[rows])
        per_domain[client.domain] = per_domain.get(client.domain, 0) + len(rows)
    shapes = {tuple(x.shape[1:]) for x in inputs}
    if len(shapes) > 1:
        raise ConfigError(f"fltrust's root set needs one input shape across clients; got {shapes}.")
    source = TensorSet(torch.cat(inputs), torch.cat(labels))
    indices = torch.arange(size, device=source.labels.device)
    return ClientData(ROOT_ID, "server", source, indices, transform), per_domain


def root_positions(counts: Sequence[int], size: int, seed: int) -> dict[int, list[int]]:
    """Which samples form the root set: ``{client index: positions among that client's
    training samples}``, clients and positions ascending (the root set's order): ``size``
    draws without replacement, uniform over all ``sum(counts)`` samples, seeded. A Flower
    server given its root set as arrays (``server_from_arrays(root_set=...)``) can take the
    same samples as the simulator with it."""
    sizes = torch.tensor(list(counts))
    generator = torch_generator(derive_seed(seed, "fltrust-root"))
    drawn = torch.randperm(int(sizes.sum()), generator=generator)[:size].sort().values  # [size]
    ends = sizes.cumsum(0)
    owners = torch.searchsorted(ends, drawn, right=True)  # [size] client of each draw
    offsets = drawn - (ends - sizes)[owners]
    return {
        int(index): offsets[owners == index].tolist() for index in torch.unique(owners).tolist()
    }


def same_pipeline(first: object, second: object) -> bool:
    """Equal pipelines, or of one class with equal settings (each client of user data gets
    its own ``PassThrough``, which holds no settings)."""
    if first == second:
        return True
    try:
        return type(first) is type(second) and vars(first) == vars(second)
    except TypeError:  # no __dict__ to compare
        return False


def root_weights(
    context: AlgorithmContext,
    worker: torch.nn.Module,
    root: ClientData,
    message: ServerMessage,
    local: LocalSettings,
    seed: int,
    clients: int,
    precision: Precision = FP32,
    forward: Forward | None = None,
) -> StateDict:
    """The server's model after the round's local training on its root set, from the
    message's weights: the same loop, epochs, batch size and learning rate as the clients
    (as in the paper), with FedAvg's plain cross-entropy hooks (the paper's server is a plain
    learner; an algorithm's own terms need its clients' state and prototypes). The root
    trains as client index ``clients``, which no client of the ``clients`` has, so its
    shuffling and augmentation are its own random streams."""
    plain = Algorithm(None, context)
    update, _ = run_client_round(
        plain, worker, root, clients, message, {}, local, seed, precision, forward=forward
    )
    return update.weights
