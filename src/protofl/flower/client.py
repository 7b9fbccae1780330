"""The generic Flower ClientApp: decode the server's message, run the round, encode the update.

A node runs exactly what a simulated client runs, :func:`protofl.engine.client.run_client_round`,
with the same seed path (``client_seed(seed, client_index, round)``), so a federation gives
the same numbers in ``protofl run`` and on Flower. Client-only algorithm state (MOON's
previous model) stays in ``context.state`` on the node.

Where a node's data comes from is a *loader*, ``Context -> ClientSetup``:

* :func:`benchmark_client` (the default) builds the run's benchmark federation from the run
  config, exactly as every other node and ``protofl run`` do (same seeded partition), and
  takes the client at the node's ``partition-id``. Node config may also set ``data-dir``
  and ``device`` for that machine.
* :func:`client_from_arrays` wraps a user's own :class:`~protofl.ClientArrays` and model,
  for a loader the user writes (see ``docs/flower.md``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from torch import nn

from protofl.algorithms import Algorithm
from protofl.builders import (
    algorithm_for,
    configure_determinism,
    local_settings,
    prepare,
    privacy_of,
    resolve_device,
)
from protofl.config import EVAL_BATCH_SIZE, RunConfig, dumps
from protofl.data.user import ClientArrays, federation_from_arrays
from protofl.engine.attacks import Attack
from protofl.engine.client import NO_PRIVACY, run_client_round
from protofl.engine.data import ClientData, Federation, TestSet
from protofl.engine.evaluate import correct_counts
from protofl.engine.loading import locate_client
from protofl.engine.local import LocalSettings
from protofl.engine.precision import FP32, Precision, resolve_precision
from protofl.engine.validation_split import split_validation
from protofl.errors import ConfigError, DataError
from protofl.federation.privacy import PrototypePrivacy
from protofl.flower.codec import (
    decode_server_message,
    encode_client_update,
    encode_validation_counts,
    load_client_state,
    sampled_clients,
    skipped_reply,
    store_client_state,
)
from protofl.flower.fields import Expected
from protofl.flower.malicious import armed, lie, tag_round_attack
from protofl.flower.settings import refuse_simulator_only, settings_from_run_config
from protofl.sim.simulator import Simulation

logger = logging.getLogger(__name__)

PARTITION_ID = "partition-id"  # node config: the client's index in the federation


@dataclass(frozen=True, eq=False)
class ClientSetup:
    """Everything one node needs to run its rounds."""

    algorithm: Algorithm
    model: nn.Module  # the worker the round trains, on the node's device
    data: ClientData
    client_index: int  # position in the federation: picks the client's seed path
    local: LocalSettings
    seed: int
    num_classes: int
    feature_dim: int
    precision: Precision = FP32
    privacy: PrototypePrivacy = NO_PRIVACY  # clipping and noise of uploaded prototypes
    attack: Attack | None = None  # a malicious node's, from its node config (malicious.py)
    # the client's own validation share (validation_fraction > 0), scored on request
    validation: TestSet | None = None
    eval_batch_size: int = EVAL_BATCH_SIZE


ClientLoader = Callable[[Context], ClientSetup]


def client_app(loader: ClientLoader | None = None) -> ClientApp:
    """A ClientApp that answers ``train`` messages for any registered algorithm."""
    chosen = loader or benchmark_client
    load = _cached(lambda context: armed(chosen(context), context.node_config))
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        setup = load(context)
        saved = state_file(context, setup.client_index)
        if saved is not None:
            restore_client_state(context.state, saved, setup)
        content = train_round(setup, message.content, context.state)
        if saved is not None:
            keep_client_state(context.state, saved, setup)
        return Message(content, reply_to=message)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        return Message(validate_round(load(context), message.content), reply_to=message)

    return app


def validate_round(setup: ClientSetup, content: RecordDict) -> RecordDict:
    """Score the server's global weights on this client's validation share: its correct
    and total counts (zero for a client without a share), which the server adds up per
    domain into the simulator's ``validation_accuracy``."""
    expected = Expected.like(setup.model.state_dict(), setup.num_classes, setup.feature_dim)
    message = decode_server_message(content, expected)
    correct, count = 0, 0
    if setup.validation is not None:
        setup.model.load_state_dict(message.weights)
        counts = correct_counts(
            setup.model, [setup.validation], setup.eval_batch_size, setup.precision
        )
        correct, count = counts[setup.validation.domain]
    return encode_validation_counts(setup.client_index, setup.data.domain, correct, count)


def train_round(setup: ClientSetup, content: RecordDict, state: RecordDict) -> RecordDict:
    """One round on this node: server message in, update out; ``state`` keeps client state."""
    drawn = sampled_clients(content)
    if drawn is not None and setup.client_index not in drawn:
        return skipped_reply(setup.client_index)
    device = next(setup.model.parameters()).device
    expected = Expected.like(setup.model.state_dict(), setup.num_classes, setup.feature_dim)
    message = decode_server_message(content, expected)
    update, new_state = run_client_round(
        setup.algorithm,
        setup.model,
        setup.data,
        setup.client_index,
        message,
        load_client_state(state, device),
        setup.local,
        setup.seed,
        setup.precision,
        setup.privacy,
    )
    store_client_state(state, new_state)
    update = lie(update, message, setup)
    logger.info(
        "round %d: client %s trained on %d samples",
        message.round,
        update.client_id,
        update.num_samples,
    )
    return tag_round_attack(encode_client_update(update, setup.client_index), setup.attack)


def benchmark_client(context: Context) -> ClientSetup:
    """The client at node config ``partition-id`` of the run config's benchmark federation."""
    config, _ = settings_from_run_config(context.run_config)
    node = context.node_config
    if "data-dir" in node:
        config = dataclasses.replace(config, data_dir=str(node["data-dir"]))
    if "device" in node:
        config = dataclasses.replace(config, device=str(node["device"]))
    return client_from_config(config, partition_id(node))


def client_from_config(config: RunConfig, client_index: int) -> ClientSetup:
    """Client ``client_index`` of ``config``'s federation, built as ``protofl run`` builds it
    but from its own domain's file only: each domain's clients are drawn from that domain's
    seed alone, so the node's samples are exactly the simulator's."""
    refuse_simulator_only(config)
    try:
        domain, local_index = locate_client(config, client_index)
    except ConfigError as err:
        raise ConfigError(f"node config {PARTITION_ID}={client_index}: {err}") from None
    device = node_device(config.device, client_index)
    # the node's domain alone (each domain's clients come from its own seed, so they are the
    # simulator's), without the held-out domains, which no node holds
    own = dataclasses.replace(config, domains=(domain,), holdout_domains=(), device=device)
    simulation, resolved = _prepared(own)
    return ClientSetup(
        algorithm=simulation.algorithm,
        model=simulation.model,
        data=simulation.federation.clients[local_index],
        client_index=client_index,
        local=simulation.local,
        seed=config.seed,
        num_classes=simulation.federation.num_classes,
        feature_dim=int(resolved["feature_dim"]),
        precision=simulation.precision,
        privacy=simulation.privacy,
        validation=own_validation(simulation.federation, local_index),
        eval_batch_size=config.eval_batch_size,
    )


def own_validation(federation: Federation, local_index: int) -> TestSet | None:
    """The validation share of the federation's client ``local_index`` (None: it has none)."""
    client_id = federation.clients[local_index].client_id
    return dict(federation.client_validation).get(client_id)


def client_from_arrays(
    data: ClientArrays,
    model: nn.Module,
    config: RunConfig,
    client_index: int,
    num_classes: int,
) -> ClientSetup:
    """A node's setup from a user's own arrays and model (labels go through the label gate).

    ``client_index`` must be unique in the federation: it picks the client's random stream
    and orders the updates on the server. ``num_classes`` must be the same on every node.
    """
    if data.client_id is None:
        data = dataclasses.replace(data, client_id=f"{data.domain}-{client_index}")
    # federation_from_arrays wants a test set; this node evaluates nothing, so it gets a
    # two-sample view of its own data (the server evaluates the global model).
    probe = {data.domain: (data.x[:2], data.y[:2])}
    device = resolve_device(node_device(config.device, client_index))
    configure_determinism(config.deterministic)
    model = model.to(device)
    federation = federation_from_arrays([data], probe, num_classes, config.augment)
    # the same seeded share per client id as train_federated holds out
    federation = split_validation(federation, config.validation_fraction, config.seed).to(device)
    client = federation.clients[0]
    example = client.transform.eval(client.source.inputs[client.indices[:2]])
    algorithm, feature_dim = algorithm_for(config, model, example, num_classes)
    precision = resolve_precision(config.precision, device)
    return ClientSetup(
        algorithm=algorithm,
        model=precision.prepare_model(model),
        data=client,
        client_index=client_index,
        local=local_settings(config),
        seed=config.seed,
        num_classes=num_classes,
        feature_dim=feature_dim,
        precision=precision,
        privacy=privacy_of(config),
        validation=own_validation(federation, 0),
        eval_batch_size=config.eval_batch_size,
    )


def partition_id(node_config: Any) -> int:
    """The node's client index from its node config, checked."""
    if PARTITION_ID not in node_config:
        raise ConfigError(
            f"node config has no {PARTITION_ID!r}; got {sorted(node_config)}. Fix: start the "
            f'SuperNode with --node-config "{PARTITION_ID}=<client index>".'
        )
    value = node_config[PARTITION_ID]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"node config {PARTITION_ID} must be an integer >= 0; got {value!r}.")
    return value


_PREPARED: dict[str, tuple[Simulation, dict[str, Any]]] = {}


def node_device(name: str, client_index: int) -> str:
    """``device=auto`` on a machine with several GPUs: spread the nodes over them by client
    index (node i on cuda:i mod count) instead of putting every node on cuda:0. Anything
    else, and one GPU or none, is left as given."""
    if name != "auto" or not torch.cuda.is_available():
        return name
    count = torch.cuda.device_count()
    return f"cuda:{client_index % count}" if count > 1 else name


def _prepared(config: RunConfig) -> tuple[Simulation, dict[str, Any]]:
    """One federation per process and config, shared by the virtual nodes a simulation
    backend runs in this process (the simulator, too, trains every client on one worker)."""
    key = dumps(config)
    if key not in _PREPARED:
        _PREPARED.clear()
        if config.threads:  # this process exists to train for this run: set, not scoped
            torch.set_num_threads(config.threads)
        _PREPARED[key] = prepare(config)
    return _PREPARED[key]


STATE_DIR = "state-dir"  # node config: a node-local folder for client state across restarts


def state_file(context: Context, client_index: int) -> Path | None:
    """Where this node keeps its client's private state (``state-dir`` in the node config),
    so that MOON's previous model or FedDyn's linear term survive a SuperNode restart."""
    folder = context.node_config.get(STATE_DIR)
    if not folder:
        return None
    return Path(str(folder)) / f"client-{client_index}-run-{context.run_id}.pt"


def restore_client_state(state: RecordDict, path: Path, setup: ClientSetup) -> None:
    """After a restart ``context.state`` is empty: load the node's saved client state."""
    if load_client_state(state) or not path.is_file():
        return
    device = next(setup.model.parameters()).device
    try:
        tensors = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read this node's saved client state ({err}).") from err
    if not isinstance(tensors, dict) or not all(
        isinstance(v, torch.Tensor) for v in tensors.values()
    ):
        raise DataError(f"{path}: not a protofl client state (expected named tensors).")
    store_client_state(state, tensors)
    logger.info("client %d: restored its state from %s", setup.client_index, path)


def keep_client_state(state: RecordDict, path: Path, setup: ClientSetup) -> None:
    """Write the client's state atomically (temporary file, fsync, rename)."""
    device = next(setup.model.parameters()).device
    tensors = load_client_state(state, device)
    if not tensors:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save({k: v.cpu() for k, v in tensors.items()}, temporary)
    with temporary.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _cached(loader: ClientLoader) -> ClientLoader:
    setups: dict[tuple[int, int], ClientSetup] = {}

    def load(context: Context) -> ClientSetup:
        key = (context.run_id, context.node_id)
        if key not in setups:
            setups[key] = loader(context)
        return setups[key]

    return load
