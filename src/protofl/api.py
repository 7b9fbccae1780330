"""The Python API: run a configured benchmark, or train on your own per-client arrays.

>>> from protofl import RunConfig, run
>>> result = run(RunConfig(rounds=3))                    # FPL on the embedded benchmark
>>> result.summary["per_domain_accuracy"]                # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from protofl import results
from protofl.algorithms import ALGORITHMS, Algorithm, AlgorithmContext, build_algorithm
from protofl.checkpoint import load_checkpoint, save_checkpoint
from protofl.config import (
    RunConfig,
    as_settings,
    build_config,
    config_from_dict,
    differences,
    merge,
)
from protofl.data.benchmarks import BENCHMARKS, BenchmarkSpec, LoadOptions
from protofl.data.federate import build_federation
from protofl.data.partition import check_allocation, draw_clients
from protofl.data.user import ClientArrays, federation_from_arrays
from protofl.engine.data import Federation
from protofl.engine.local import LocalSettings
from protofl.engine.precision import resolve_precision
from protofl.errors import ConfigError, DataError
from protofl.models import MODELS, build_model, check_feature_model
from protofl.models.base import feature_model
from protofl.payloads import GlobalState
from protofl.privacy import PrototypePrivacy, epsilons
from protofl.records import Observer, RoundRecord
from protofl.registry import unknown_name_message
from protofl.run_folder import RunFolder
from protofl.seeding import derive_seed, seeded_torch
from protofl.sim.simulator import Simulation

logger = logging.getLogger(__name__)

# Settings that say how a run executes, not what it computes: a resumed run may change them.
# (threads can change the order of float sums, so the last digits may differ from an
# uninterrupted run; everything else stays exactly the same.)
EXECUTION_ONLY = frozenset({"out", "threads"})


@dataclass(frozen=True, eq=False)
class RunResult:
    """What a run produced: per-round records, the summary, the final model and state."""

    history: list[RoundRecord]
    summary: dict[str, Any]
    model: nn.Module
    state: GlobalState
    out_dir: Path | None
    resolved: dict[str, Any] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"device: {name!r} is not a torch device ({err}).") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here.")
    return device


def load_federation(config: RunConfig) -> tuple[BenchmarkSpec, Federation, dict[str, Any]]:
    """Load the benchmark's domains, draw the clients, and build the tensors."""
    spec = BENCHMARKS.get(config.benchmark)
    domains = config.domains or spec.domains
    for name in domains:
        if name not in spec.domains:
            kind = f"domain of {spec.name}"
            raise ConfigError(unknown_name_message(kind, name, list(spec.domains)))
    check_allocation(spec.domains, config.clients_per_domain)
    allocation = {d: config.clients_per_domain.get(d, spec.clients_per_domain[d]) for d in domains}
    fraction = config.client_fraction or spec.client_fraction
    options = LoadOptions(config.data_dir, config.download, config.cache_dir, config.dataset_seed)
    loaded = [spec.loader(name, options) for name in domains]
    plans = draw_clients(
        {d.name: d.y_train for d in loaded},
        allocation,
        fraction,
        config.seed,
        spec.num_classes,
        spec.ensure_all_classes,
    )
    federation = build_federation(
        loaded, plans, spec.num_classes, spec.image_size, config.augment, spec.flip
    )
    resolved = {
        "domains": list(domains),
        "clients_per_domain": allocation,
        "client_fraction": fraction,
        "client_sizes": {c.client_id: len(c) for c in federation.clients},
        "test_sizes": {t.domain: len(t.data) for t in federation.test_sets},
    }
    return spec, federation, resolved


def prepare(config: RunConfig) -> tuple[Simulation, dict[str, Any]]:
    """Everything ready to run: data, model, algorithm, simulation at round 0."""
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    spec, federation, resolved = load_federation(config)
    model_name = spec.default_model if config.model == "auto" else config.model
    MODELS.get(model_name)
    with seeded_torch(derive_seed(config.seed, "model")):
        model = build_model(model_name, spec.num_classes).to(device)
    return _simulation(config, model, federation.to(device), {**resolved, "model": model_name})


def _simulation(
    config: RunConfig, model: nn.Module, federation: Federation, resolved: dict[str, Any]
) -> tuple[Simulation, dict[str, Any]]:
    device = next(model.parameters()).device
    first = federation.clients[0]
    example = first.transform.eval(first.source.inputs[first.indices[:2]])
    algorithm, feature_dim = algorithm_for(
        config, model, example, federation.num_classes, len(federation.clients)
    )
    precision = resolve_precision(config.precision, device)
    privacy = privacy_of(config)
    simulation = Simulation.start(
        algorithm,
        model,
        federation,
        local_settings(config),
        config.seed,
        config.eval_batch_size,
        precision,
        privacy=privacy,
        compile_backend=config.compile,
    )
    options = config.algorithm_options.get(config.algorithm, {})
    config_class = ALGORITHMS.get(config.algorithm).make_config(options)
    resolved = {
        **resolved,
        **run_facts(config, device, precision.name, privacy, feature_dim),
        "algorithm_config": _as_dict(config_class),
    }
    return simulation, resolved


def algorithm_for(
    config: RunConfig,
    model: nn.Module,
    example: torch.Tensor,
    num_classes: int,
    num_clients: int = 0,
) -> tuple[Algorithm, int]:
    """``config``'s algorithm for ``model`` (checked on ``example``); returns it with the
    feature size. The simulator and both Flower apps build their algorithm here."""
    feature_dim = check_feature_model(model, example, num_classes)
    context = AlgorithmContext(
        num_classes,
        feature_dim,
        config.rounds,
        next(model.parameters()).device,
        num_clients=num_clients,
        parameter_names=frozenset(name for name, _ in model.named_parameters()),
        weight_rule=config.aggregation,
        trim_fraction=config.trim_fraction,
        seed=config.seed,
    )
    options = config.algorithm_options.get(config.algorithm, {})
    return build_algorithm(config.algorithm, options, context), feature_dim


def privacy_of(config: RunConfig) -> PrototypePrivacy:
    return PrototypePrivacy(
        config.privacy_clip_norm, config.privacy_noise_multiplier, config.privacy_delta
    )


def local_settings(config: RunConfig) -> LocalSettings:
    return LocalSettings(
        config.local_epochs, config.batch_size, config.lr, config.momentum, config.weight_decay
    )


def run_facts(
    config: RunConfig,
    device: torch.device,
    precision: str,
    privacy: PrototypePrivacy,
    feature_dim: int,
) -> dict[str, Any]:
    """What a run resolved at start, for ``config.json`` (simulator and Flower server)."""
    planned = epsilons(privacy, config.rounds)[-1] if privacy.enabled else None
    return {
        "device": str(device),
        "precision": precision,
        "privacy_epsilon_planned": planned,
        "feature_dim": feature_dim,
    }


def _as_dict(options: Any) -> dict[str, Any]:
    return dataclasses.asdict(options)


def execute(
    simulation: Simulation,
    config: RunConfig,
    resolved: dict[str, Any],
    observer: Observer | None = None,
    write: bool = True,
    overwrite: bool = False,
    resumed_dir: Path | None = None,
) -> RunResult:
    """Run ``simulation`` to ``config.rounds``, writing results and a checkpoint after every
    round when ``write`` is set (into ``resumed_dir`` when continuing a run)."""
    folder = None
    if resumed_dir is not None:
        folder = RunFolder(resumed_dir)
        folder.rewrite(simulation.history)
    elif write:
        folder = RunFolder.create(config, resolved, overwrite)
    started_round, started = simulation.state.round, time.perf_counter()

    def after_round(sim: Simulation) -> None:
        if folder is not None:
            folder.record(sim.history[-1])
            save_checkpoint(folder.path, sim)

    history = simulation.run(config.rounds, observer, after_round)
    summary = results.summarise(history, time.perf_counter() - started)
    summary["resumed_from_round"] = started_round if resumed_dir is not None else None
    if folder is not None:
        folder.finish(summary)
    out_dir = folder.path if folder is not None else None
    return RunResult(history, summary, simulation.model, simulation.state, out_dir, resolved)


def resume(
    out_dir: str | Path,
    observer: Observer | None = None,
    changes: Mapping[str, Any] | None = None,
) -> RunResult:
    """Continue the run saved in ``out_dir`` from its last checkpoint.

    ``changes`` (settings given again on the command line) must agree with the saved
    configuration; a resumed run with other settings would not be the same experiment.
    """
    folder = Path(out_dir)
    saved = saved_config(folder)
    if changes:
        wanted = build_config(merge(as_settings(saved), changes), ALGORITHMS.names())
        check_same_settings(folder, saved, wanted)
    if changes and "threads" in changes:
        saved = dataclasses.replace(saved, threads=int(changes["threads"]))
    simulation, resolved = prepare(saved)
    load_checkpoint(folder, simulation)
    logger.info("resuming %s after round %d", folder, simulation.state.round)
    return execute(simulation, saved, resolved, observer, resumed_dir=folder)


def check_labels_fit_head(model: nn.Module, federation: Federation) -> None:
    """Name the labels a user's model cannot predict, before blaming the model: a label 7
    with a 4-output head is a data question first."""
    first = federation.clients[0]
    example = first.transform.eval(first.source.inputs[first.indices[:2]])
    was_training = model.training
    model.eval()
    with torch.no_grad():
        typed = feature_model(model)
        try:
            outputs = int(typed.head(typed.features(example)).shape[-1])
        except Exception:
            return
        finally:
            model.train(was_training)
    if outputs >= federation.num_classes:
        return
    where = [
        f"client {c.client_id}"
        for c in federation.clients
        if (c.source.labels[c.indices] >= outputs).any()
    ]
    where += [
        f"test set {t.domain}" for t in federation.test_sets if (t.data.labels >= outputs).any()
    ]
    raise DataError(
        f"labels {outputs}..{federation.num_classes - 1} occur in {', '.join(where[:5])}"
        f"{' and more' if len(where) > 5 else ''}, but the model's head has {outputs} outputs "
        f"(classes 0..{outputs - 1}). Fix: map the labels to 0..{outputs - 1}, or give the "
        f"head {federation.num_classes} outputs."
    )


def saved_config(folder: Path) -> RunConfig:
    """The configuration a run folder was started with."""
    saved_path = folder / "config.json"
    if not saved_path.is_file():
        raise ConfigError(f"{str(folder)!r} holds no config.json; it is not a protofl run folder.")
    return config_from_dict(json.loads(saved_path.read_text()))


def check_same_settings(folder: Path, saved: RunConfig, wanted: RunConfig) -> None:
    """Refuse to continue a run with settings that change what it computes."""
    changed = [key for key in differences(saved, wanted) if key not in EXECUTION_ONLY]
    if changed:
        listing = ", ".join(
            f"{k} (saved {getattr(saved, k)!r}, given {getattr(wanted, k)!r})" for k in changed
        )
        raise ConfigError(
            f"cannot resume {str(folder)!r} with other settings: {listing}. Resume without "
            "them, or start a new run in another --out."
        )


def run(
    config: RunConfig | None = None,
    observer: Observer | None = None,
    write: bool = True,
    overwrite: bool = False,
) -> RunResult:
    """Run a configured experiment (defaults: FPL on the embedded benchmark)."""
    config = config or RunConfig()
    simulation, resolved = prepare(config)
    return execute(simulation, config, resolved, observer, write, overwrite)


def train_federated(
    clients: Sequence[ClientArrays],
    test_sets: Mapping[str, tuple[Any, Any]],
    model: nn.Module,
    config: RunConfig | None = None,
    num_classes: int | None = None,
    observer: Observer | None = None,
    write: bool = False,
    resume_dir: str | Path | None = None,
) -> RunResult:
    """Train ``model`` federated over user-supplied per-client arrays.

    ``clients`` hold each client's inputs and labels (any accepted label format) and the
    name of its domain; ``test_sets`` map a domain name to ``(inputs, labels)`` for
    evaluation. ``config`` supplies the algorithm and training settings (its benchmark
    fields are ignored). The model must offer ``features`` and ``head``. With ``write``,
    results and a checkpoint go to ``config.out`` after every round; ``resume_dir``
    continues such a run from its checkpoint (same data, model and settings).
    """
    config = config or RunConfig()
    federation = federation_from_arrays(clients, test_sets, num_classes, config.augment)
    check_labels_fit_head(model, federation)
    device = resolve_device(config.device)
    simulation, resolved = _simulation(config, model.to(device), federation.to(device), {})
    if resume_dir is None:
        return execute(simulation, config, resolved, observer, write)
    folder = Path(resume_dir)
    check_same_settings(folder, saved_config(folder), config)
    load_checkpoint(folder, simulation)
    return execute(simulation, config, resolved, observer, resumed_dir=folder)
