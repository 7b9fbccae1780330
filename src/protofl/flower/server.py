"""The generic Flower ServerApp: build the server side, run the strategy, write the results.

The server initialises the model exactly as ``protofl run`` does (seeded from the config),
evaluates the global model on every domain's test split after each round, and writes the
same ``config.json``, ``metrics.jsonl`` and ``summary.json`` (:mod:`protofl.outputs.results`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from torch import nn

from protofl.api import check_same_settings, saved_config
from protofl.builders import (
    algorithm_for,
    configure_determinism,
    local_settings,
    privacy_of,
    resolve_device,
    run_facts,
)
from protofl.config import RunConfig
from protofl.core.records import RoundRecord
from protofl.core.seeding import derive_seed, seeded_torch
from protofl.data.user import ClientArrays, federation_from_arrays
from protofl.engine.data import ClientData, Federation
from protofl.engine.loading import federation_size, load_federation, load_test_sets
from protofl.engine.precision import resolve_precision
from protofl.engine.root_set import ROOT_ID, draw_root_set
from protofl.engine.validation_split import split_validation
from protofl.errors import ConfigError
from protofl.flower.settings import (
    FlowerSettings,
    refuse_simulator_only,
    settings_from_run_config,
)
from protofl.flower.strategy import ProtoflStrategy, ServerSetup
from protofl.models import build_model
from protofl.outputs import results
from protofl.outputs.checkpoint import Snapshot, load_snapshot
from protofl.outputs.run_folder import RunFolder

logger = logging.getLogger(__name__)

ServerLoader = Callable[[Context], ServerSetup]


@dataclass(frozen=True, eq=False)
class FlowerResult:
    """What a Flower run produced on the server."""

    history: list[RoundRecord]
    summary: dict[str, Any]
    strategy: ProtoflStrategy
    out_dir: Path | None


def server_app(
    loader: ServerLoader | None = None,
    write: bool = True,
    collect: Callable[[FlowerResult], None] | None = None,
) -> ServerApp:
    """A ServerApp that runs the configured algorithm and writes the result files;
    ``collect`` receives the :class:`FlowerResult` when the run ends."""
    load = loader or benchmark_server
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        log_to_stderr()
        result = run_server(grid, load(context), write=write)
        if collect is not None:
            collect(result)

    return app


def run_server(grid: Any, setup: ServerSetup, write: bool = True) -> FlowerResult:
    """Run every round over ``grid``; with ``write``, save results as ``protofl run`` does."""
    strategy = ProtoflStrategy(setup)
    folder = _open_folder(setup, strategy) if write else None
    started = time.perf_counter()
    if folder is not None:
        folder.start_tensorboard(
            setup.config, setup.num_classes, [t.domain for t in setup.test_sets]
        )

    def after_round(record: RoundRecord) -> None:
        if folder is not None:  # the server's side; the clients' state stays on the nodes
            nodes = {NODES: encode_nodes(strategy.node_of)}
            folder.round_done(Snapshot(strategy.state, strategy.history, nodes))

    with folder if folder is not None else contextlib.nullcontext():
        history = strategy.run(grid, after_round)
        summary = results.summarise(history, time.perf_counter() - started)
        if folder is not None:
            folder.finish(summary)
    return FlowerResult(history, summary, strategy, folder.path if folder else None)


NODES = "flower.nodes"  # the checkpoint entry holding which node holds which client


def encode_nodes(node_of: dict[int, int]) -> dict[str, torch.Tensor]:
    """{client index: node id} as tensors; node ids are unsigned 64-bit, kept as two halves."""
    return {
        str(index): torch.tensor([node >> 32, node & 0xFFFFFFFF], dtype=torch.int64)
        for index, node in node_of.items()
    }


def decode_nodes(stored: Mapping[str, torch.Tensor]) -> dict[int, int]:
    return {int(index): int(pair[0]) << 32 | int(pair[1]) for index, pair in stored.items()}


def _open_folder(setup: ServerSetup, strategy: ProtoflStrategy) -> RunFolder:
    """A new run folder, or with ``flower.resume`` the saved run, its checkpoint loaded into
    ``strategy`` (the server's state and rounds; the clients' own state is on the nodes)."""
    config, out = setup.config, Path(setup.config.out) if setup.config.out else None
    if not setup.settings.resume:
        if out is not None and (out / "metrics.jsonl").exists():
            raise ConfigError(
                f"{str(out)!r} already holds a run. Continue it by submitting again with "
                "--run-config 'flower.resume=true', or give the run another out."
            )
        resolved = {**setup.resolved, "flower": _settings_dict(setup.settings)}
        return RunFolder.create(config, resolved, kind="flower")
    if out is None:
        raise ConfigError("flower.resume=true needs out: the folder of the run to continue.")
    folder = RunFolder(out)  # locked: one server per run folder
    check_same_settings(out, saved_config(out), config)
    device = next(setup.model.parameters()).device
    snapshot = load_snapshot(out, setup.model.state_dict(), device)
    if snapshot.state.round >= config.rounds:
        folder.close()
        raise ConfigError(f"{str(out)!r} already finished all {config.rounds} rounds.")
    strategy.state, strategy.history = snapshot.state, snapshot.history
    strategy.node_of = decode_nodes(snapshot.client_states.get(NODES, {}))
    folder.add_part(setup.resolved, snapshot.state.round + 1, config.threads)
    folder.rewrite(snapshot.history)
    logger.info("resuming %s after round %d", out, snapshot.state.round)
    return folder


def benchmark_server(context: Context) -> ServerSetup:
    """The server side of the run config's benchmark, built as ``builders.prepare`` does."""
    config, settings = settings_from_run_config(context.run_config)
    return server_from_config(config, settings)


def server_from_config(config: RunConfig, settings: FlowerSettings | None = None) -> ServerSetup:
    """The server side of ``config``'s benchmark from its test splits only (the clients'
    training data stays with the SuperNodes); the model is initialised as ``protofl run``
    initialises it."""
    refuse_simulator_only(config)
    spec, tests, resolved = load_test_sets(config)
    device = resolve_device(config.device)
    configure_determinism(config.deterministic)
    model_name = spec.default_model if config.model == "auto" else config.model
    with seeded_torch(derive_seed(config.seed, "model")):
        model = build_model(model_name, spec.num_classes).to(device)
    tests = tests.to(device)
    first = tests.test_sets[0]
    example = first.transform.eval(first.data.inputs[:2])
    size = federation_size(config)
    algorithm, feature_dim = algorithm_for(config, model, example, spec.num_classes, size)
    precision = resolve_precision(config.precision, device)
    privacy = privacy_of(config)
    facts = run_facts(config, device, precision.name, privacy, feature_dim)
    root, root_facts = benchmark_root_set(config, device)
    return ServerSetup(
        algorithm=algorithm,
        model=precision.prepare_model(model),
        test_sets=tests.test_sets,
        holdout_sets=tests.holdout_sets,
        num_classes=spec.num_classes,
        feature_dim=feature_dim,
        config=config,
        settings=settings or FlowerSettings(),
        num_clients=size,
        precision=precision,
        privacy=privacy,
        resolved={**resolved, "model": model_name, **facts, **root_facts},
        root_set=root,
        local=local_settings(config),
    )


def benchmark_root_set(
    config: RunConfig, device: torch.device
) -> tuple[ClientData | None, dict[str, Any]]:
    """FLTrust's root set for a benchmark run: drawn from the clients' training data (after
    their validation shares are taken out) exactly as the simulator draws it. Only then does
    the ServerApp load the clients' data; it keeps just the ``root_size`` drawn samples."""
    if config.aggregation != "fltrust":
        return None, {}
    _, federation, _ = load_federation(config)
    federation = split_validation(federation, config.validation_fraction, config.seed)
    root, per_domain = draw_root_set(federation.clients, config.root_size, config.seed)
    moved = Federation((root,), (), federation.num_classes).to(device)
    return moved.clients[0], {"root_set_per_domain": per_domain}


def server_from_arrays(
    test_sets: Mapping[str, tuple[Any, Any]],
    model: nn.Module,
    config: RunConfig,
    num_classes: int,
    settings: FlowerSettings | None = None,
    num_clients: int | None = None,
    root_set: ClientArrays | None = None,
) -> ServerSetup:
    """The server side for users' own arrays: ``model`` with its initial weights, and the
    ``{domain: (x, y)}`` test sets the global model is evaluated on after every round.

    ``num_clients`` is the federation's size (default: ``flower.num_nodes``, else unknown);
    FedDyn scales its server correction by the share of clients that answered.
    ``root_set`` is the server's own clean sample for ``aggregation='fltrust'`` (Cao et al.
    collect it on the server; :func:`protofl.engine.root_set.root_positions` names the
    samples the simulator would draw).
    """
    refuse_simulator_only(config)
    settings = settings or FlowerSettings()
    size = num_clients if num_clients is not None else (settings.num_nodes or None)
    domain, (x, y) = next(iter(test_sets.items()))
    # federation_from_arrays validates the test sets; the one placeholder client is unused.
    federation = federation_from_arrays(
        [ClientArrays(x[:2], y[:2], domain)], test_sets, num_classes, config.augment
    )
    device = resolve_device(config.device)
    configure_determinism(config.deterministic)
    model = model.to(device)
    federation = federation.to(device)
    first = federation.test_sets[0]
    example = first.transform.eval(first.data.inputs[:2])
    algorithm, feature_dim = algorithm_for(config, model, example, num_classes, size or 0)
    precision = resolve_precision(config.precision, device)
    privacy = privacy_of(config)
    root: ClientData | None = None
    if root_set is not None and config.aggregation == "fltrust":
        own = dataclasses.replace(root_set, domain="server", client_id=ROOT_ID)
        built = federation_from_arrays([own], test_sets, num_classes, config.augment)
        root = built.to(device).clients[0]
    return ServerSetup(
        algorithm=algorithm,
        model=precision.prepare_model(model),
        test_sets=federation.test_sets,
        num_classes=num_classes,
        feature_dim=feature_dim,
        config=config,
        settings=settings,
        num_clients=size,
        precision=precision,
        privacy=privacy,
        resolved=run_facts(config, device, precision.name, privacy, feature_dim),
        root_set=root,
        local=local_settings(config),
    )


def log_to_stderr(level: int = logging.INFO) -> None:
    """Show protofl's log lines in a Flower app process (Flower streams its stderr)."""
    package = logging.getLogger("protofl")
    if not package.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        package.addHandler(handler)
        package.setLevel(level)


def _settings_dict(settings: FlowerSettings) -> dict[str, Any]:
    return dataclasses.asdict(settings)
