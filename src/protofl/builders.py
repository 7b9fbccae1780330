"""Builders: everything a run is made of, from a configuration: the device, the benchmark's
federation (loaded by :mod:`protofl.engine.loading`), the model, the algorithm, the local-training
and privacy settings and the facts ``config.json`` records. The simulator
(:mod:`protofl.api`) and both Flower apps build their runs here, so all three set a run up
the same way."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from protofl.algorithms import ALGORITHMS, Algorithm, AlgorithmContext, build_algorithm
from protofl.config import (
    RunConfig,
)
from protofl.core.seeding import derive_seed, seeded_torch
from protofl.engine.attacks import (
    Attack,
    attack_facts,
    check_prototype_poison,
    draw_malicious,
    sends_prototypes,
)
from protofl.engine.backdoor import check_backdoor
from protofl.engine.data import Federation
from protofl.engine.loading import load_federation
from protofl.engine.local import LocalSettings
from protofl.engine.precision import resolve_precision
from protofl.engine.root_set import draw_root_set
from protofl.engine.validation_split import split_validation
from protofl.errors import ConfigError, DataError
from protofl.federation.defences import bulyan_shortfall, trim_shortfall
from protofl.federation.participation import participants
from protofl.federation.privacy import SEEDED_NOISE_WARNING, PrototypePrivacy, epsilons
from protofl.models import MODELS, build_model, check_feature_model
from protofl.models.base import feature_model
from protofl.sim.simulator import Simulation

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"device: {name!r} is not a torch device ({err}).") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here.")
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            raise ConfigError(
                f"device {name!r}: this machine has {count} GPU(s), cuda:0..cuda:{count - 1} "
                "(CUDA_VISIBLE_DEVICES may hide some)."
            )
        torch.cuda.set_device(device)  # what autocast, bf16 checks and compilers default to
    return device


def configure_determinism(enabled: bool) -> None:
    """``deterministic=true``: torch's deterministic kernels everywhere (on CUDA: atomics-free
    ``index_add_``, cuDNN's deterministic convolutions, cuBLAS with a fixed workspace), so
    one seed on one GPU gives the same numbers. Process-wide; off leaves torch as it is.

    ``CUBLAS_WORKSPACE_CONFIG`` must be set before cuBLAS starts; set here, it holds for a
    run whose process has not used a GPU yet (the CLI, a Flower node)."""
    if not enabled:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op thread count at ``count`` (unset: left alone) for the block, then
    restored: a run inside someone's process must not change that process's setting."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def prepare(config: RunConfig) -> tuple[Simulation, dict[str, Any]]:
    """Everything ready to run: data, model, algorithm, simulation at round 0."""
    device = resolve_device(config.device)
    spec, federation, resolved = load_federation(config)
    model_name = spec.default_model if config.model == "auto" else config.model
    MODELS.get(model_name)
    with seeded_torch(derive_seed(config.seed, "model")):
        model = build_model(model_name, spec.num_classes).to(device)
    return build_simulation(config, model, federation.to(device), {**resolved, "model": model_name})


def build_simulation(
    config: RunConfig, model: nn.Module, federation: Federation, resolved: dict[str, Any]
) -> tuple[Simulation, dict[str, Any]]:
    configure_determinism(config.deterministic)
    federation = split_validation(federation, config.validation_fraction, config.seed)
    if federation.validation_sets:
        resolved = {
            **resolved,
            "validation_sizes": {t.domain: len(t.data) for t in federation.validation_sets},
        }
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
        clients_per_round=config.clients_per_round,
    )
    simulation.distance_screen = config.distance_screen
    if config.attack:
        ids = [c.client_id for c in federation.clients]
        liars = draw_malicious(
            ids, config.malicious_fraction, config.malicious_clients, config.seed
        )
        if config.attack == "backdoor":
            check_backdoor(first.source.inputs, config.backdoor_target, federation.num_classes)
        if config.attack == "prototype-poison":
            sends = sends_prototypes(algorithm, simulation.state, model, first, precision)
            check_prototype_poison(sends, config.algorithm, federation.num_classes)
        simulation.attack = Attack(
            config.attack,
            liars,
            config.attack_strength,
            config.backdoor_target,
            config.backdoor_fraction,
            config.attack_perturbation,
        )
        resolved = {  # the server is not told
            **resolved,
            "malicious_clients": sorted(liars),
            **attack_facts(simulation.attack, len(ids), config.clients_per_round),
        }
    if config.aggregation == "fltrust":
        root, per_domain = draw_root_set(federation.clients, config.root_size, config.seed)
        simulation.root_set = root
        resolved = {**resolved, "root_set_per_domain": per_domain}  # what the server trains on
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
        assumed_malicious=config.assumed_malicious,
        clip_norm=config.clip_norm,
        prototype_aggregation=config.prototype_aggregation,
        prototype_min_cosine=config.prototype_min_cosine,
        seed=config.seed,
    )
    if config.aggregation in ("bulyan", "trimmed-mean") and num_clients:  # before any round
        per_round = participants(num_clients, config.clients_per_round)
        problem = (
            bulyan_shortfall(per_round, config.assumed_malicious)
            if config.aggregation == "bulyan"
            else trim_shortfall(per_round, config.trim_fraction)
        )
        if problem is not None:
            raise ConfigError(problem)
    options = config.algorithm_options.get(config.algorithm, {})
    return build_algorithm(config.algorithm, options, context), feature_dim


def privacy_of(config: RunConfig) -> PrototypePrivacy:
    return PrototypePrivacy(
        config.privacy_clip_norm,
        config.privacy_noise_multiplier,
        config.privacy_delta,
        seeded=config.privacy_noise == "seeded",
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
    facts: dict[str, Any] = {
        "device": str(device),
        "precision": precision,
        "privacy_epsilon_planned": planned,
        "feature_dim": feature_dim,
    }
    if privacy.enabled and privacy.seeded:
        facts["privacy_warning"] = SEEDED_NOISE_WARNING
        logger.warning(SEEDED_NOISE_WARNING)
    return facts


def _as_dict(options: Any) -> dict[str, Any]:
    return dataclasses.asdict(options)


def check_labels_fit_head(model: nn.Module, federation: Federation) -> None:
    """Name the labels a user's model cannot predict, before blaming the model: a label 7
    with a 4-output head is a data question first."""
    first = federation.clients[0]
    example = first.transform.eval(first.source.inputs[first.indices[:2]])
    parameter = next(model.parameters(), None)
    if parameter is not None:  # a model already on a GPU (or in float64) gets its own kind
        example = example.to(parameter.device)
        if example.is_floating_point() and parameter.is_floating_point():
            example = example.to(parameter.dtype)
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
