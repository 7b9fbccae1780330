"""Clients per the paper's protocol: k clients per domain, each a fraction of its train split.

Within a domain, clients draw without replacement, so no two clients share a sample. For
Office-Caltech the reference additionally makes every client hold every class; here each
client first takes one sample of every class from the remaining pool, then fills up at
random (the reference reaches the same guarantee by swapping samples after the draw).

Label skew (``label_skew = alpha > 0``) adds class imbalance inside each domain, composed
with the domain split: the domain's clients take the same number of samples in all
(k x their share, drawn at random), and each class's samples among them are split by
proportions drawn from Dirichlet(alpha, ..., alpha) over the k clients (the partition of
Hsu et al. 2019 that FL-bench, PFLlib and Flower Datasets offer). Small alpha: clients hold
few classes; large alpha: close to the plain split. The every-class guarantee does not apply
under skew; every client still gets at least two samples (BatchNorm needs two per batch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from protofl.core.seeding import derive_seed, numpy_generator
from protofl.errors import ConfigError, DataError


@dataclass(frozen=True, eq=False)
class ClientPlan:
    """Which samples of its domain's train split a client holds."""

    client_id: str
    domain: str
    indices: np.ndarray  # [n] int64 into the domain's train split


def client_share(domain_size: int, fraction: float) -> int:
    """Samples per client: ``int(fraction * N)``, at least one."""
    return max(1, int(fraction * domain_size))


def draw_clients(
    train_labels: Mapping[str, torch.Tensor],
    clients_per_domain: Mapping[str, int],
    fraction: float,
    seed: int,
    num_classes: int,
    ensure_all_classes: bool = False,
    label_skew: float = 0.0,
) -> list[ClientPlan]:
    """Draw every domain's clients; domains in the order of ``train_labels``."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"client_fraction must lie in (0, 1]; got {fraction}.")
    plans: list[ClientPlan] = []
    for domain, labels in train_labels.items():
        count = clients_per_domain.get(domain, 0)
        if count < 0:
            raise ConfigError(f"clients_per_domain[{domain!r}] must be >= 0; got {count}.")
        rng = numpy_generator(derive_seed(seed, "partition", domain))
        share = client_share(len(labels), fraction)
        if label_skew > 0:
            shares = _skewed_domain(labels.numpy(), count, share, label_skew, rng, domain)
        else:
            required = num_classes if ensure_all_classes else 0
            shares = _draw_domain(labels.numpy(), count, share, rng, domain, required)
        plans.extend(ClientPlan(f"{domain}-{k}", domain, share) for k, share in enumerate(shares))
    if not plans:
        raise ConfigError("no clients: every domain has 0 clients in clients_per_domain.")
    return plans


def _draw_domain(
    labels: np.ndarray,
    count: int,
    share: int,
    rng: np.random.Generator,
    domain: str,
    required_classes: int,
) -> list[np.ndarray]:
    if count * share > len(labels):
        raise ConfigError(
            f"{domain}: {count} clients x {share} samples each need {count * share} samples, "
            f"but the train split has {len(labels)}. Lower client_fraction or the client count."
        )
    if required_classes > share:
        raise ConfigError(
            f"{domain}: each client must hold all {required_classes} classes but gets only "
            f"{share} samples. Raise client_fraction."
        )
    pool = rng.permutation(len(labels))
    taken = np.zeros(len(labels), dtype=bool)
    shares = []
    for client in range(count):
        chosen = _cover_classes(labels, pool, taken, required_classes, domain, client)
        taken[chosen] = True
        rest = pool[~taken[pool]][: share - len(chosen)]
        taken[rest] = True
        shares.append(np.sort(np.concatenate([chosen, rest])).astype(np.int64))
    return shares


MIN_CLIENT_SAMPLES = 2  # BatchNorm in training mode needs two samples per batch
SKEW_ATTEMPTS = 100


def _skewed_domain(
    labels: np.ndarray, count: int, share: int, alpha: float, rng: np.random.Generator, domain: str
) -> list[np.ndarray]:
    """``count`` clients from ``count * share`` random samples, each class split among them by
    Dirichlet(alpha) proportions; redrawn while a client would get fewer than two samples."""
    if count == 0:
        return []
    if count * share > len(labels):
        raise ConfigError(
            f"{domain}: {count} clients x {share} samples each need {count * share} samples, "
            f"but the train split has {len(labels)}. Lower client_fraction or the client count."
        )
    pool = rng.permutation(len(labels))[: count * share]
    for _ in range(SKEW_ATTEMPTS):
        parts: list[list[np.ndarray]] = [[] for _ in range(count)]
        for cls in np.unique(labels[pool]):
            members = pool[labels[pool] == cls]
            proportions = rng.dirichlet(np.full(count, alpha))
            cuts = (np.cumsum(proportions)[:-1] * len(members)).astype(np.int64)
            for client, piece in enumerate(np.split(members, cuts)):
                parts[client].append(piece)
        shares = [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]
        if min(len(s) for s in shares) >= MIN_CLIENT_SAMPLES:
            return shares
    raise ConfigError(
        f"{domain}: label_skew {alpha} left a client with fewer than {MIN_CLIENT_SAMPLES} "
        f"samples in {SKEW_ATTEMPTS} draws. Raise label_skew (less skew) or client_fraction."
    )


def _cover_classes(
    labels: np.ndarray,
    pool: np.ndarray,
    taken: np.ndarray,
    required_classes: int,
    domain: str,
    client: int,
) -> np.ndarray:
    """The first free sample of every class in pool order (none when not required)."""
    if not required_classes:
        return np.zeros(0, dtype=np.int64)
    free = pool[~taken[pool]]
    classes, first = np.unique(labels[free], return_index=True)
    missing = sorted(set(range(required_classes)) - set(classes.tolist()))
    if missing:
        raise DataError(
            f"{domain}: client {client} cannot hold every class; no unused samples left of "
            f"class(es) {missing}. Use fewer clients or a smaller client_fraction."
        )
    return free[first].astype(np.int64)


def check_allocation(domains: Sequence[str], clients_per_domain: Mapping[str, int]) -> None:
    """Refuse client counts for domains the benchmark does not have (typos)."""
    unknown = sorted(set(clients_per_domain) - set(domains))
    if unknown:
        raise ConfigError(
            f"clients_per_domain names domain(s) {unknown} that the benchmark does not have "
            f"(it has {', '.join(domains)})."
        )
