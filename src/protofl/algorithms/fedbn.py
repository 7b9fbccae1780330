"""FedBN (Li, Jiang, Zhang, Kamp, Dou, "FedBN: Federated Learning on Non-IID Features via
Local Batch Normalization", ICLR 2021): BatchNorm layers stay on each client.

Client: from its second round on, a client trains with the server's weights except every
BatchNorm entry (affine weight and bias, running mean and variance, ``num_batches_tracked``),
which it keeps from its own previous round (client state ``local.<key>``, never sent back
into its model by the server). Server: FedAvg over the non-BatchNorm weights (Algorithm 1 of
the paper). The clients still upload their BatchNorm entries, and the server averages them
too, only so that a *global* model exists to score beside the personalised ones; no client
ever loads those averaged statistics.

Evaluation: the paper scores each client's own model (shared layers + its BatchNorm). The
round loop does the same through :meth:`FedBN.personal_weights`: each client's model is
tested on its domain's test split and a domain with several clients gets the plain mean of
their accuracies (``personal_accuracy`` in ``metrics.jsonl``, beside the global model's
``per_domain_accuracy``). This runs in the simulator, where client state is at hand; on
Flower that state lives on the nodes and only the global score is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from protofl.algorithms.base import Algorithm
from protofl.algorithms.hooks import ClientResult, ClientRound, ClientStart
from protofl.core.payloads import Prototypes, StateDict

LOCAL = "local."  # prefix of a client's own BatchNorm entries in its client state


@dataclass(frozen=True)
class FedBNConfig:
    """FedBN has no options of its own."""


def batch_norm_keys(model: nn.Module) -> list[str]:
    """The state-dict keys of every BatchNorm layer (parameters and running statistics)."""
    keys = []
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            keys += [f"{name}.{key}" if name else key for key in module.state_dict()]
    return keys


class FedBNClientRound(ClientRound):
    """Trains with the client's own BatchNorm; keeps it for the next round."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def finish(self, model: nn.Module, prototypes: Prototypes | None) -> ClientResult:
        state = model.state_dict()
        return ClientResult(state={LOCAL + key: state[key].detach().clone() for key in self.keys})


class FedBN(Algorithm):
    name = "fedbn"

    def start_client(self, start: ClientStart) -> FedBNClientRound:
        own = local_entries(start.state)
        if own:  # from the client's second round: its BatchNorm, not the server's
            start.model.load_state_dict(own, strict=False)
        return FedBNClientRound(batch_norm_keys(start.model))

    def personal_weights(self, weights: StateDict, client_state: StateDict) -> StateDict | None:
        return {**weights, **local_entries(client_state)}


def local_entries(client_state: StateDict) -> StateDict:
    return {k[len(LOCAL) :]: v for k, v in client_state.items() if k.startswith(LOCAL)}
