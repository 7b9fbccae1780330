"""The algorithm contract, for every registered algorithm: short runs complete with finite
metrics, are deterministic for a seed, keep client-only state on the client and server-only
state on the server; presets and options are consistent with the registry."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from protofl import RunConfig, run, train_federated
from protofl.algorithms import ALGORITHMS, AlgorithmContext, build_algorithm
from protofl.config import build_config, load_preset
from protofl.core.payloads import GlobalState
from protofl.data.embedded import EMBEDDED_DOMAINS
from protofl.errors import ConfigError

from recorded_runs import recorded_simulation
from tiny_data import TinyNet, tiny_clients

NAMES = ALGORITHMS.names()
BASELINES = ["fedavg", "fedprox", "moon", "feddyn", "fedopt", "fedproc", "fedproto", "fpl"]
ABLATIONS = ["fpl-cpcl-only", "fpl-upcr-only", "fpl-global-consistency", "fpl-global-contrast"]
PRIVATE = {"moon": "previous_model.", "feddyn": "linear.", "fedbn": "local."}  # by key prefix
SERVER_ONLY = {  # GlobalState.tensors, by prefix
    "feddyn": ("h.",),
    "fedopt": ("m.", "v."),
    "fedheal": ("fedheal.",),
    "fpl-fedheal": ("fedheal.",),
}


SUCCESSORS = ["fedbn", "fedheal", "fpl-fedheal", "fedplvm", "feddap"]  # after the FPL paper


def test_every_paper_baseline_ablation_and_successor_is_registered() -> None:
    assert set(NAMES) == set(BASELINES + ABLATIONS + SUCCESSORS)


def tiny_config(name: str, seed: int = 0) -> RunConfig:
    return RunConfig(algorithm=name, rounds=2, local_epochs=1, batch_size=16, lr=0.05, seed=seed)


def tiny_run(name: str) -> tuple[list[dict[str, float]], GlobalState]:
    clients, tests = tiny_clients(per_client=32)
    torch.manual_seed(0)
    result = train_federated(clients, tests, TinyNet(), tiny_config(name))
    assert [r.round for r in result.history] == [1, 2]
    for record in result.history:
        assert all(math.isfinite(v) for v in record.train.values()), record.train
        assert all(0.0 <= a <= 1.0 for a in record.per_domain_accuracy.values())
    return [r.train for r in result.history], result.state


@pytest.mark.parametrize("name", NAMES)
def test_two_rounds_complete_with_finite_metrics_and_repeat_exactly(name: str) -> None:
    first_train, first_state = tiny_run(name)
    again_train, again_state = tiny_run(name)
    assert first_train == again_train
    pairs = [(first_state.weights, again_state.weights), (first_state.tensors, again_state.tensors)]
    for store, other in pairs:
        assert store.keys() == other.keys()
        for key, value in store.items():
            assert torch.equal(value, other[key]), key


@pytest.mark.parametrize("name", NAMES)
def test_client_state_stays_on_clients_and_server_state_on_the_server(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    simulation, recording = recorded_simulation(name, monkeypatch)
    private = {key for state in simulation.client_states.values() for key in state}
    server_only = {key for state in recording.states for key in state.tensors}
    sent = {key for m in recording.messages for key in m.weights}
    sent |= {key for u in recording.updates for key in u.weights}
    assert not private & server_only
    assert all(key.startswith(PRIVATE[name]) for key in private) if name in PRIVATE else not private
    prefixes = SERVER_ONLY.get(name, ())
    assert bool(server_only) == bool(prefixes)
    assert all(key.startswith(prefixes) for key in server_only)
    # weights travel as the model's own entries, nothing smuggled in beside them
    model_keys = set(TinyNet().state_dict())
    assert all(set(m.weights) == model_keys for m in recording.messages)
    assert all(set(u.weights) == model_keys for u in recording.updates)
    # nothing private travels by value either
    sent_tensors = [t for m in recording.messages for t in m.weights.values()]
    sent_tensors += [t for u in recording.updates for t in u.weights.values()]
    private_ids = {id(t) for state in simulation.client_states.values() for t in state.values()}
    assert not private_ids & {id(t) for t in sent_tensors}
    # what prototype_aggregation defends: the registry says who uploads prototypes
    uploaded = any(u.prototypes is not None and len(u.prototypes) for u in recording.updates)
    assert uploaded == ALGORITHMS.get(name).sends_prototypes


@pytest.mark.parametrize("name", NAMES)
def test_short_run_on_the_embedded_default(name: str) -> None:
    one_each = {domain: 1 for domain in EMBEDDED_DOMAINS}
    config = RunConfig(
        algorithm=name,
        rounds=1,
        local_epochs=1,
        client_fraction=0.1,
        clients_per_domain=one_each,
        eval_batch_size=512,
    )
    result = run(config, write=False)
    assert result.resolved["algorithm_config"] == dataclasses.asdict(
        ALGORITHMS.get(name).make_config({})
    )
    assert math.isfinite(result.summary["mean_accuracy"])
    assert all(math.isfinite(v) for v in result.history[0].train.values())


@pytest.mark.parametrize(
    "preset", ["paper-office", "paper-digits", "reduced-office", "reduced-digits"]
)
def test_presets_state_every_algorithms_defaults(preset: str) -> None:
    values = load_preset(preset)
    config = build_config(values, NAMES)
    without_options = {n for n in NAMES if not dataclasses.fields(ALGORITHMS.get(n).config_class)}
    assert set(config.algorithm_options) == set(NAMES) - without_options
    for name, options in config.algorithm_options.items():
        spec = ALGORITHMS.get(name)
        assert spec.make_config(options) == spec.make_config({}), name


def test_reduced_presets_keep_the_paper_setup_but_fewer_rounds_and_epochs() -> None:
    for benchmark in ("office", "digits"):
        paper = build_config(load_preset(f"paper-{benchmark}"), NAMES)
        reduced = build_config(load_preset(f"reduced-{benchmark}"), NAMES)
        assert (reduced.rounds, reduced.local_epochs) == (20, 2)
        same = ("benchmark", "model", "batch_size", "lr", "momentum", "weight_decay")
        for field in (*same, "client_fraction", "clients_per_domain"):
            assert getattr(reduced, field) == getattr(paper, field), field


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("fedprox", {"mu": -1.0}, "fedprox.mu must be a finite number >= 0"),
        ("moon", {"temperature": 0.0}, "moon.temperature must be > 0"),
        ("moon", {"mu": float("nan")}, "moon.mu must be a finite number"),
        ("feddyn", {"alpha": 0.0}, "feddyn.alpha must be > 0"),
        ("fedopt", {"beta1": 1.0}, r"fedopt.beta1 must lie in \[0, 1\)"),
        ("fedopt", {"tau": 0.0}, "fedopt.tau must be > 0"),
        ("fedopt", {"server_lr": -0.1}, "fedopt.server_lr must be > 0"),
        ("fedproc", {"temperature": -1.0}, "fedproc.temperature must be > 0"),
        ("fedproto", {"proto_weight": -1.0}, "fedproto.proto_weight must be >= 0"),
        ("fedproto", {"weight_by_samples": "yes"}, "weight_by_samples: expected bool"),
        ("fpl", {"upcr_target": "cluster"}, "fpl.upcr_target must be 'unbiased'"),
        ("fpl-global-contrast", {"cpcl_prototypes": "all"}, "must be 'clusters' or 'global'"),
        ("moon", {"temprature": 0.1}, "Did you mean 'temperature'"),
    ],
)
def test_bad_options_are_refused_with_the_option_named(
    name: str, options: dict[str, object], message: str
) -> None:
    context = AlgorithmContext(num_classes=4, feature_dim=8, rounds=2)
    with pytest.raises(ConfigError, match=message):
        build_algorithm(name, options, context)


def test_ablations_are_fpl_with_switches_that_stay_overridable() -> None:
    defaults = {name: ALGORITHMS.get(name).make_config({}) for name in ABLATIONS}
    assert defaults["fpl-cpcl-only"].upcr_weight == 0.0
    assert defaults["fpl-upcr-only"].cpcl_weight == 0.0
    assert defaults["fpl-global-consistency"].upcr_target == "global"
    assert defaults["fpl-global-contrast"].cpcl_prototypes == "global"
    tuned = ALGORITHMS.get("fpl-cpcl-only").make_config({"temperature": 0.1})
    assert (tuned.temperature, tuned.upcr_weight) == (0.1, 0.0)
    assert ALGORITHMS.get("fpl").make_config({}) == type(tuned)()  # plain FPL unchanged
