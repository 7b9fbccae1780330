"""Loading a benchmark's federation from a configuration: its domains, the seeded draw of
each domain's clients, the test splits and the held-out domains; the server's view (test
splits and held-out domains only) and where a Flower node's client lies in the federation.
Each domain's clients are drawn from that domain's seed alone, so a node that loads only its
own domain gets exactly the simulator's samples."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from protofl.config import RunConfig
from protofl.core.registry import unknown_name_message
from protofl.data.benchmarks import BenchmarkSpec, LoadOptions, resolve_benchmark
from protofl.data.domain import Domain
from protofl.data.federate import build_federation, build_holdout_sets
from protofl.data.partition import check_allocation, draw_clients
from protofl.engine.data import Federation, TestSet
from protofl.errors import ConfigError


def load_options(config: RunConfig) -> LoadOptions:
    return LoadOptions(
        config.data_dir,
        config.download,
        config.cache_dir,
        config.dataset_seed,
        config.image_size,
        config.classes,
        config.skip_unreadable_images,
        config.domains,
    )


def benchmark_of(config: RunConfig) -> BenchmarkSpec:
    """The run's benchmark, concrete (a folder benchmark's domains listed from its folder)."""
    spec = resolve_benchmark(config.benchmark, load_options(config))
    if config.classes and not spec.class_names:
        raise ConfigError(
            f"classes is for benchmarks read from image folders (folders, pacs, office-home, "
            f"domainnet); {spec.name} has fixed classes. Fix: drop --set classes=..."
        )
    return spec


def load_federation(config: RunConfig) -> tuple[BenchmarkSpec, Federation, dict[str, Any]]:
    """Load the benchmark's domains, draw the clients, and build the tensors."""
    spec = benchmark_of(config)
    domains = config.domains or spec.domains
    for name in domains:
        if name not in spec.domains:
            kind = f"domain of {spec.name}"
            raise ConfigError(unknown_name_message(kind, name, list(spec.domains)))
    check_allocation(spec.domains, config.clients_per_domain)
    holdout = _check_holdout(config.holdout_domains, domains, spec)
    allocation = _allocation(config, spec)  # without the held-out domains
    fraction = config.client_fraction or spec.client_fraction
    options = load_options(config)
    everything = [spec.loader(name, options) for name in domains]
    loaded = [d for d in everything if d.name not in holdout]
    plans = draw_clients(  # each domain's clients come from its own seed: unchanged by holdout
        {d.name: d.y_train for d in loaded},
        allocation,
        fraction,
        config.seed,
        spec.num_classes,
        spec.ensure_all_classes,
        config.label_skew,
    )
    federation = build_federation(
        loaded, plans, spec.num_classes, config.image_size, config.augment, spec.flip
    )
    if holdout:
        unseen = [d for d in everything if d.name in holdout]
        holdout_sets = build_holdout_sets(unseen, config.image_size, spec.flip)
        federation = dataclasses.replace(federation, holdout_sets=holdout_sets)
    resolved = {
        "domains": [d.name for d in loaded],
        "clients_per_domain": allocation,
        "client_fraction": fraction,
        "client_sizes": {c.client_id: len(c) for c in federation.clients},
        "client_domains": {c.client_id: c.domain for c in federation.clients},
        "client_class_counts": {
            c.client_id: torch.bincount(
                c.source.labels[c.indices], minlength=spec.num_classes
            ).tolist()
            for c in federation.clients
        },
        "test_sizes": {t.domain: len(t.data) for t in federation.test_sets},
    }
    if holdout:
        resolved["holdout_sizes"] = {t.domain: len(t.data) for t in federation.holdout_sets}
    return spec, federation, {**resolved, **data_facts(spec, everything)}


def data_facts(spec: BenchmarkSpec, domains: list[Domain]) -> dict[str, Any]:
    """What config.json records about the data read from folders: the classes, and per
    domain how it was split, the classes it lacks and the files left out."""
    facts: dict[str, Any] = {}
    if spec.class_names:
        facts["classes"] = list(spec.class_names)
    per_domain = {d.name: dict(d.facts) for d in domains if d.facts}
    if per_domain:
        facts["data"] = per_domain
    return facts


def _check_holdout(
    holdout: tuple[str, ...], domains: tuple[str, ...] | list[str], spec: BenchmarkSpec
) -> set[str]:
    """The held-out domains, each one of the run's domains, leaving at least one to train."""
    for name in holdout:
        if name not in domains:
            raise ConfigError(unknown_name_message(f"domain of {spec.name}", name, list(domains)))
    if set(domains) <= set(holdout):
        raise ConfigError(
            f"holdout_domains {', '.join(holdout)} leaves no domain to train on; hold out fewer."
        )
    return set(holdout)


def load_test_sets(config: RunConfig) -> tuple[BenchmarkSpec, Federation, dict[str, Any]]:
    """Only the benchmark's test splits (a server's view: no client's training data), and
    all of each held-out domain's samples, one domain at a time so that only one domain's
    raw arrays are held while converting."""
    spec = benchmark_of(config)
    domains = config.domains or spec.domains
    for name in domains:
        if name not in spec.domains:
            raise ConfigError(
                unknown_name_message(f"domain of {spec.name}", name, list(spec.domains))
            )
    holdout = _check_holdout(config.holdout_domains, domains, spec)
    allocation = _allocation(config, spec)
    options = load_options(config)
    tests: list[TestSet] = []
    unseen: list[TestSet] = []
    for name in domains:
        domain = spec.loader(name, options)
        if name in holdout:
            unseen += build_holdout_sets([domain], config.image_size, spec.flip)
        else:
            part = build_federation(
                [domain], [], spec.num_classes, config.image_size, False, spec.flip
            )
            tests += part.test_sets
        del domain  # its training arrays go now, before the next domain loads
    resolved = {
        "domains": list(allocation),
        "clients_per_domain": allocation,
        "client_fraction": config.client_fraction or spec.client_fraction,
        "test_sizes": {t.domain: len(t.data) for t in tests},
    }
    if unseen:
        resolved["holdout_sizes"] = {t.domain: len(t.data) for t in unseen}
    federation = Federation((), tuple(tests), spec.num_classes, holdout_sets=tuple(unseen))
    return spec, federation, resolved


def federation_size(config: RunConfig) -> int:
    """How many clients the benchmark federation has under ``config``."""
    return sum(_allocation(config, benchmark_of(config)).values())


def locate_client(config: RunConfig, client_index: int) -> tuple[str, int]:
    """Federation client ``client_index`` as (its domain, its index among that domain's
    clients), from the allocation alone (clients are ordered domain by domain), so a node
    can load just its domain's file."""
    spec = benchmark_of(config)
    allocation = _allocation(config, spec)
    first = 0
    for domain, count in allocation.items():
        if client_index < first + count:
            return domain, client_index - first
        first += count
    raise ConfigError(
        f"client index {client_index} is outside the federation's 0..{first - 1} "
        f"({', '.join(f'{d}: {n}' for d, n in allocation.items())})."
    )


def client_ids(config: RunConfig) -> list[str]:
    """The federation's client ids in order (``<domain>-<k>``, domain by domain), from the
    allocation alone, as ``load_federation`` names its clients."""
    allocation = _allocation(config, benchmark_of(config))
    return [f"{domain}-{k}" for domain, count in allocation.items() for k in range(count)]


def _allocation(config: RunConfig, spec: BenchmarkSpec) -> dict[str, int]:
    """Clients per trained domain, in the run's domain order (held-out domains have none)."""
    domains = config.domains or spec.domains
    return {
        d: config.clients_per_domain.get(d, spec.clients_per_domain[d])
        for d in domains
        if d not in config.holdout_domains
    }
