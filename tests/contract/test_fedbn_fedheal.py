"""FedBN (local BatchNorm, personalised evaluation) and FedHEAL (a server step composed with
FedAvg and FPL) on the shared loops, against hand computations."""

from __future__ import annotations

import pytest
import torch

from protofl import RunConfig, train_federated
from protofl.algorithms import AlgorithmContext, build_algorithm
from protofl.algorithms.base import aggregate_all
from protofl.algorithms.fedbn import LOCAL, batch_norm_keys
from protofl.config import build_config
from protofl.core.payloads import ClientUpdate, GlobalState, Prototypes
from protofl.data.user import federation_from_arrays
from protofl.engine.evaluate import evaluate
from protofl.errors import ConfigError

from tiny_data import TinyNet, tiny_clients

CONFIG = RunConfig(rounds=2, local_epochs=1, batch_size=16, lr=0.05, seed=1, precision="fp32")


def test_batch_norm_keys_are_every_entry_of_the_batch_norm_layers() -> None:
    keys = batch_norm_keys(TinyNet())
    assert sorted(keys) == sorted(
        f"bn.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    )


def test_fedbn_keeps_batch_norm_local_and_scores_each_clients_own_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clients, tests = tiny_clients()
    torch.manual_seed(0)
    config = RunConfig(**{**CONFIG.to_dict(), "algorithm": "fedbn"})
    seen: list[torch.Tensor] = []
    from protofl.algorithms import fedbn

    original = fedbn.FedBN.start_client

    def recording(self, start):  # type: ignore[no-untyped-def]
        hooks = original(self, start)
        seen.append(start.model.state_dict()["bn.running_mean"].clone())
        if start.state:  # from round 2: the client's own statistics, not the server's
            own = start.state[LOCAL + "bn.running_mean"]
            assert torch.equal(seen[-1], own)
            assert not torch.equal(seen[-1], start.message.weights["bn.running_mean"])
        return hooks

    monkeypatch.setattr(fedbn.FedBN, "start_client", recording)
    result = train_federated(clients, tests, TinyNet(), config)
    assert len(seen) == 8  # 4 clients x 2 rounds
    record = result.history[-1]
    assert record.personal_accuracy is not None and record.personal_mean_accuracy is not None
    assert set(record.personal_accuracy) == {"red", "green"}
    summary = result.summary["last_5_rounds"]
    assert summary["personal_mean_accuracy"] == pytest.approx(
        sum(r.personal_mean_accuracy or 0 for r in result.history) / 2
    )
    fedavg = train_federated(clients, tests, TinyNet(), CONFIG)
    assert fedavg.history[-1].personal_accuracy is None  # global-model algorithms: none


def test_personal_accuracy_equals_a_plain_evaluation_of_each_client_model() -> None:
    from protofl.builders import build_simulation

    clients, tests = tiny_clients()
    torch.manual_seed(0)
    config = RunConfig(**{**CONFIG.to_dict(), "algorithm": "fedbn"})
    federation = federation_from_arrays(clients, tests)
    simulation, _ = build_simulation(config, TinyNet(), federation, {})
    simulation.run(2)
    scores: dict[str, list[float]] = {}
    model = TinyNet()
    for client in federation.clients:
        own = {
            k[len(LOCAL) :]: v
            for k, v in simulation.client_states[client.client_id].items()
            if k.startswith(LOCAL)
        }
        model.load_state_dict({**simulation.state.weights, **own})
        test_set = next(t for t in federation.test_sets if t.domain == client.domain)
        scores.setdefault(client.domain, []).append(evaluate(model, [test_set], 64)[client.domain])
    expected = {d: sum(v) / len(v) for d, v in scores.items()}
    assert simulation.history[-1].personal_accuracy == pytest.approx(expected)


def update(name: str, value: float, samples: int = 1) -> ClientUpdate:
    return ClientUpdate(name, samples, {"w": torch.tensor([value, -value])})


def test_fedheal_first_round_by_hand() -> None:
    """Round 1: every coordinate kept; weights 1/K + m * d_k / sum d; samples ignored."""
    algorithm = build_algorithm("fedheal", {}, AlgorithmContext(4, 8, 3))
    start = GlobalState(0, {"w": torch.tensor([1.0, -1.0])})
    new = aggregate_all(algorithm, start, [update("a", 0.0, 1), update("b", 4.0, 100)])
    # updates u = g - w: a -> [1, -1] (distance sqrt 2), b -> [-3, 3] (distance 3 sqrt 2)
    share_a, share_b = 0.25, 0.75
    weight_a, weight_b = 0.5 + 0.4 * share_a, 0.5 + 0.4 * share_b
    a = weight_a / (weight_a + weight_b)
    step = a * 1.0 + (1 - a) * -3.0
    torch.testing.assert_close(new.weights["w"], torch.tensor([1.0 - step, -1.0 + step]))
    assert int(new.tensors["fedheal.rounds.a"]) == 1
    assert new.tensors["fedheal.weight.b"].item() == pytest.approx(weight_b)
    torch.testing.assert_close(new.tensors["fedheal.history.a.w"], torch.tensor([1.0, 0.0]))


def test_fedheal_masks_a_coordinate_whose_sign_flips() -> None:
    algorithm = build_algorithm("fedheal", {"threshold": 0.5}, AlgorithmContext(4, 8, 3))
    state = GlobalState(0, {"w": torch.tensor([0.0, 0.0])})
    state = aggregate_all(algorithm, state, [update("a", -1.0)])  # u = [1, -1]
    # next round a moves both coordinates the other way: u = [-1, 1]; both disagree with
    # a history of one round, so both are masked and the model stays put
    moved = {"w": state.weights["w"] + torch.tensor([1.0, -1.0])}
    after = aggregate_all(algorithm, state, [ClientUpdate("a", 1, moved)])
    torch.testing.assert_close(after.weights["w"], state.weights["w"])


def test_fedheal_with_both_parts_off_is_fedavg_and_each_part_switches_alone() -> None:
    """The ablation switches: no mask and sample weights give FedAvg's weighted mean; the
    mask alone still freezes a flipped coordinate; the fair weights alone ignore samples."""
    context = AlgorithmContext(4, 8, 3)
    start = GlobalState(0, {"w": torch.tensor([1.0, -1.0])})
    clients = [update("a", 0.0, 1), update("b", 4.0, 3)]
    off = build_algorithm("fedheal", {"harmonise": False, "equalise": False}, context)
    plain = aggregate_all(build_algorithm("fedavg", {}, context), start, clients)
    torch.testing.assert_close(aggregate_all(off, start, clients).weights["w"], plain.weights["w"])
    # samples 1 and 3: (0 * 1 + 4 * 3) / 4 = 3
    torch.testing.assert_close(plain.weights["w"], torch.tensor([3.0, -3.0]))

    fair_only = build_algorithm("fedheal", {"harmonise": False}, context)
    full = build_algorithm("fedheal", {}, context)
    # round 1 keeps every coordinate, so the fair weights alone equal full FedHEAL there
    torch.testing.assert_close(
        aggregate_all(fair_only, start, clients).weights["w"],
        aggregate_all(full, start, clients).weights["w"],
    )
    mask_only = build_algorithm("fedheal", {"threshold": 0.5, "equalise": False}, context)
    for algorithm, frozen in ((mask_only, True), (fair_only, False)):
        state = aggregate_all(algorithm, GlobalState(0, {"w": torch.zeros(2)}), [update("a", -1.0)])
        moved = {"w": state.weights["w"] + torch.tensor([1.0, -1.0])}  # the sign flips
        after = aggregate_all(algorithm, state, [ClientUpdate("a", 1, moved)])
        assert torch.equal(after.weights["w"], state.weights["w"]) == frozen


def test_fpl_fedheal_takes_both_option_sets_and_keeps_fpls_prototype_step() -> None:
    config = build_config(
        {"algorithm": "fpl-fedheal", "fpl-fedheal": {"temperature": 0.05, "threshold": 0.2}},
        ["fpl-fedheal"],
    )
    assert config.algorithm_options["fpl-fedheal"]["threshold"] == 0.2
    with pytest.raises(ConfigError, match="threshold must lie in"):
        RunConfig(algorithm_options={"fpl-fedheal": {"threshold": 1.5}})
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        RunConfig(algorithm_options={"fpl-fedheal": {"temperature": 0.0}})
    algorithm = build_algorithm("fpl-fedheal", {"temperature": 0.05}, AlgorithmContext(2, 2, 3))
    prototypes = Prototypes(torch.eye(2), torch.tensor([0, 1]), torch.tensor([5, 5]))
    updates = [
        ClientUpdate(c, 5, {"w": torch.tensor([float(k)])}, prototypes) for k, c in enumerate("ab")
    ]
    new = aggregate_all(algorithm, GlobalState(0, {"w": torch.tensor([0.5])}), updates)
    assert new.prototypes is not None and len(new.prototypes) >= 2  # FPL's clusters
    assert algorithm.name == "fpl-fedheal"


def test_each_round_records_fedheals_weights_and_kept_share_per_client() -> None:
    """metrics.jsonl says what FedHEAL did: the weights sum to 1 per round, the kept share is
    1 in round 1 (no sign history yet) and below 1 once masks drop coordinates, and it is
    exactly 1 with the mask switched off; FedAvg records nothing."""
    clients, tests = tiny_clients()
    changes = {"rounds": 3}
    config = RunConfig(**{**CONFIG.to_dict(), "algorithm": "fedheal", **changes})
    history = train_federated(clients, tests, TinyNet, config).history
    for record in history:
        step = record.server_step
        assert step is not None and set(step) == set(record.clients)
        assert sum(v["weight"] for v in step.values()) == pytest.approx(1.0)
        assert all(0.0 <= v["kept"] <= 1.0 for v in step.values())
    assert all(v["kept"] == 1.0 for v in history[0].server_step.values())  # type: ignore[union-attr]
    assert any(v["kept"] < 1.0 for r in history[1:] for v in r.server_step.values())  # type: ignore[union-attr]
    unmasked = RunConfig(
        **{**config.to_dict(), "algorithm_options": {"fedheal": {"harmonise": False}}}
    )
    for record in train_federated(clients, tests, TinyNet, unmasked).history:
        assert all(v["kept"] == 1.0 for v in record.server_step.values())  # type: ignore[union-attr]
    fedavg = RunConfig(**{**CONFIG.to_dict(), "algorithm": "fedavg"})
    assert all(
        r.server_step is None for r in train_federated(clients, tests, TinyNet, fedavg).history
    )
