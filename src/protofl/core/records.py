"""What a round leaves behind: the record of ``metrics.jsonl`` and the progress callbacks.

Shared by the simulator, the Flower server, results, checkpoints and reporting, so none of
them needs to import the round loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class RoundRecord:
    """What one round produced; one line of ``metrics.jsonl``."""

    round: int
    per_domain_accuracy: dict[str, float]
    mean_accuracy: float
    train: dict[str, float]  # sample-weighted means of the clients' loss terms
    clients: dict[str, dict[str, float]]
    num_prototypes: int
    train_seconds: float
    eval_seconds: float
    rejected: dict[str, str] = field(default_factory=dict)  # client id -> why
    privacy_epsilon: float | None = None  # prototype privacy spent so far, when enabled
    # algorithms with local layers (FedBN): each domain's clients' own models on its test
    # split, the plain mean over the domain's clients; None when every client is global
    personal_accuracy: dict[str, float] | None = None
    personal_mean_accuracy: float | None = None
    # clients expected this round whose update did not arrive (on Flower: a node that died
    # or did not answer), by client id where it was seen before
    absent: list[str] = field(default_factory=list)
    # fairness and pooled accuracy; None in records written before protofl recorded them
    domain_std: float | None = None  # sample std (n - 1) of per_domain_accuracy
    worst_domain: str | None = None
    worst_domain_accuracy: float | None = None
    pooled_accuracy: float | None = None  # correct over all domains' test samples
    # what the server step did per client, where the algorithm or weight rule reports it
    # (FedHEAL: each client's aggregation weight and the share of its parameter coordinates
    # the mask kept; Krum, Multi-Krum, geometric median: each client's weight in the result)
    server_step: dict[str, dict[str, float]] | None = None
    # with validation_fraction > 0: the global model on each domain's held-out training
    # samples, and their plain mean over domains (as mean_accuracy); None otherwise
    validation_accuracy: dict[str, float] | None = None
    validation_mean_accuracy: float | None = None
    # with holdout_domains: the global model on all of each held-out (unseen) domain's data
    holdout_accuracy: dict[str, float] | None = None
    holdout_mean_accuracy: float | None = None
    # attack=backdoor: the share of triggered test images of the other classes that the
    # global model assigns to the target, pooled over domains; None without a backdoor
    attack_success_rate: float | None = None


class Observer(Protocol):
    """Progress callbacks; the CLI draws bars from them, the library only logs."""

    def round_started(self, round_index: int, rounds: int) -> None: ...

    def client_finished(self, round_index: int, client_id: str) -> None: ...

    def round_finished(self, record: RoundRecord) -> None: ...
