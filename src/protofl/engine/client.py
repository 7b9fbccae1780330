"""One client's round, from the server's message to its update: shared by the simulator and
the Flower client app, so both run exactly the same code and draw the same random numbers."""

from __future__ import annotations

import torch
from torch import nn

from protofl.algorithms.base import Algorithm
from protofl.algorithms.hooks import ClientInfo, ClientStart
from protofl.core.payloads import ClientUpdate, ServerMessage, StateDict
from protofl.core.seeding import derive_seed, seeded_torch, torch_generator
from protofl.engine.data import ClientData
from protofl.engine.local import Forward, LocalSettings, train_locally
from protofl.engine.precision import FP32, Precision
from protofl.federation.privacy import PrototypePrivacy, noise_generator, privatize

NO_PRIVACY = PrototypePrivacy()


def client_seed(seed: int, client_index: int, round_index: int) -> int:
    """The seed of client ``client_index``'s randomness (shuffling, augmentation) in a round."""
    return derive_seed(seed, "client", client_index, "round", round_index)


def run_client_round(
    algorithm: Algorithm,
    worker: nn.Module,
    client: ClientData,
    client_index: int,
    message: ServerMessage,
    client_state: StateDict,
    local: LocalSettings,
    seed: int,
    precision: Precision = FP32,
    privacy: PrototypePrivacy = NO_PRIVACY,
    forward: Forward | None = None,
) -> tuple[ClientUpdate, StateDict]:
    """Load the message's weights into ``worker``, train locally, return the update and the
    client's new private state (the old one when the algorithm keeps none)."""
    device = next(worker.parameters()).device
    worker.load_state_dict(message.weights)
    who = ClientInfo(client.client_id, client.domain)
    hooks = algorithm.start_client(ClientStart(message, worker, client_state, who))
    round_seed = client_seed(seed, client_index, message.round)
    with seeded_torch(round_seed, device):
        outcome = train_locally(
            worker,
            client,
            hooks,
            local,
            torch_generator(round_seed, device),
            where=f"round {message.round}, client {client.client_id}",
            precision=precision,
            forward=forward,
        )
    result = hooks.finish(worker, outcome.prototypes)
    prototypes = result.prototypes
    if prototypes is not None and privacy.enabled:
        # payloads live on the CPU, and so does the noise's generator (a CUDA generator
        # cannot draw onto CPU prototypes); its seed is secret unless privacy.seeded
        generator = noise_generator(privacy, seed, client_index, message.round)
        prototypes = privatize(prototypes.to("cpu"), privacy, generator)
    update = ClientUpdate(
        client_id=client.client_id,
        num_samples=len(client),
        weights=copy_state(worker),
        prototypes=prototypes,
        metrics=outcome.metrics,
    )
    # contiguous like the weights, so the state is laid out the same on every path (the
    # bf16 path keeps the model channels-last; Flower's records are always contiguous)
    state = {key: value.contiguous() for key, value in result.state.items()}
    return update, state or client_state


def copy_state(model: nn.Module) -> StateDict:
    """A detached, contiguous copy of every parameter and buffer.

    Contiguous whatever the model's memory format (channels-last on the bf16 path), so
    payloads look the same on every path; ``load_state_dict`` copies values into the
    receiving model's own layout.
    """
    return {
        key: value.detach().clone(memory_format=torch.contiguous_format)
        for key, value in model.state_dict().items()
    }
