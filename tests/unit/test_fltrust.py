"""FLTrust (Cao et al., NDSS 2021) against its definition on a case worked by hand, its root
set (drawn from training data only, seeded), order invariance, and runs in the simulator
(on Flower: tests/integration/test_flower_defences.py)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from protofl import RunConfig, train_federated
from protofl.algorithms import AlgorithmContext, build_algorithm
from protofl.core.payloads import ClientUpdate, GlobalState
from protofl.data.user import federation_from_arrays
from protofl.engine.root_set import draw_root_set
from protofl.errors import ConfigError, PayloadError
from protofl.federation.defences import FLTrust, RoundReference, fltrust_factors
from protofl.federation.rules import make_combiner

from tiny_data import TinyNet, tiny_clients

# g: w = (0, 0), counter 5; the server's root update g0 = (1, 0), norm 1.
#   a (2, 0): cos 1, trust 1, rescaled to norm 1: (1, 0)
#   b (1, 1): cos 1/sqrt2, trust 1/sqrt2, rescaled: (1/sqrt2, 1/sqrt2)
#   c (0, 3): cos 0, trust 0          d (-5, 0): cos -1, trust ReLU(-1) = 0
# new = g + [1 (1, 0) + (1/sqrt2) (1/sqrt2, 1/sqrt2)] / (1 + 1/sqrt2) = (1.5, 0.5) / 1.7071
START = {"w": torch.zeros(2), "bn.num_batches_tracked": torch.tensor(5)}
ROOT = {"w": torch.tensor([1.0, 0.0]), "bn.num_batches_tracked": torch.tensor(6)}
CLIENTS = {
    "a": ([2.0, 0.0], 7),
    "b": ([1.0, 1.0], 8),
    "c": ([0.0, 3.0], 9),
    "d": ([-5.0, 0.0], 100),
}
EXPECTED = torch.tensor([1.5, 0.5]) / (1 + 1 / math.sqrt(2))


def client_state(name: str) -> dict[str, torch.Tensor]:
    w, count = CLIENTS[name]
    return {"w": torch.tensor(w), "bn.num_batches_tracked": torch.tensor(count)}


def trusted(names: str | tuple[str, ...], root: dict[str, torch.Tensor] | None = None) -> FLTrust:
    rule = FLTrust(RoundReference(START, ROOT if root is None else root))
    for name in names:
        rule.add(client_state(name), 1000 if name == "d" else 1)  # claimed samples buy nothing
    return rule


def test_fltrust_weights_rescaled_updates_by_their_relu_cosine_worked_by_hand() -> None:
    rule = trusted("abcd")
    root2 = 1 / math.sqrt(2)
    # c_i = TS_i ||g0|| / ||u_i|| / sum TS: a 1/2, b root2/sqrt2, c and d 0, over 1 + root2
    expected = torch.tensor([1 / 2, root2 / math.sqrt(2), 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(rule.factors(), expected / (1 + root2))
    result = rule.result()
    torch.testing.assert_close(result["w"], EXPECTED)
    assert result["bn.num_batches_tracked"].dtype == torch.int64  # counters: plain mean
    assert int(result["bn.num_batches_tracked"]) == 31


def test_fltrust_does_not_depend_on_the_order_of_clients() -> None:
    for order in itertools.permutations("abcd"):
        torch.testing.assert_close(trusted(order).result()["w"], EXPECTED, atol=1e-6, rtol=0)


def test_fltrust_keeps_the_model_when_nobody_earns_trust() -> None:
    assert torch.equal(trusted("cd").result()["w"], START["w"])  # cosines 0 and -1
    still = {"w": torch.zeros(2), "bn.num_batches_tracked": torch.tensor(5)}
    assert torch.equal(trusted("ab", root=still).result()["w"], START["w"])  # g0 = 0
    # an update of norm 0 has no direction: no trust, no division by zero
    factors = fltrust_factors(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0]), 1.0)
    torch.testing.assert_close(factors, torch.tensor([0.0, 1.0]))


def test_fltrust_gets_the_root_through_the_algorithm_interface_or_says_what_is_missing() -> None:
    context = AlgorithmContext(4, 8, 1, weight_rule="fltrust")
    for name in ("fedavg", "fpl"):
        aggregation = build_algorithm(name, {}, context).start_aggregation(
            GlobalState(0, START), ROOT
        )
        for client in "abcd":
            aggregation.add(ClientUpdate(client, 1, client_state(client)))
        torch.testing.assert_close(aggregation.result().weights["w"], EXPECTED)
    with pytest.raises(PayloadError, match=r"fltrust needs .* root set"):
        make_combiner("fltrust", reference=RoundReference(START))


def test_the_root_set_is_a_seeded_draw_of_training_samples_only() -> None:
    clients, tests = tiny_clients(per_client=24)
    federation = federation_from_arrays(clients, tests)
    root, per_domain = draw_root_set(federation.clients, 30, seed=3)
    assert len(root) == 30 and sum(per_domain.values()) == 30
    assert set(per_domain) <= {"red", "green"}
    training = torch.cat([c.source.inputs[c.indices] for c in federation.clients])
    flat = training.flatten(1)
    for row in root.source.inputs.flatten(1):  # every root sample is some client's sample
        assert bool((flat == row).all(dim=1).any())
    again, _ = draw_root_set(federation.clients, 30, seed=3)
    other, _ = draw_root_set(federation.clients, 30, seed=4)
    assert torch.equal(again.source.inputs, root.source.inputs)
    assert not torch.equal(other.source.inputs, root.source.inputs)
    with pytest.raises(ConfigError, match="root_size 97 is more than the 96 training samples"):
        draw_root_set(federation.clients, 97, seed=3)
    with pytest.raises(ConfigError, match="root_size must be >= 1"):
        RunConfig(aggregation="fltrust", root_size=0)


def test_a_run_with_fltrust_trains_and_differs_from_the_mean() -> None:
    finals = {}
    for rule in ("mean", "fltrust"):
        clients, tests = tiny_clients(per_client=24)
        config = RunConfig(rounds=2, local_epochs=1, batch_size=16, precision="fp32",
                           algorithm="fpl", aggregation=rule, root_size=16)  # fmt: skip
        result = train_federated(clients, tests, TinyNet, config)
        assert len(result.history) == 2 and 0.0 <= result.summary["mean_accuracy"] <= 1.0
        finals[rule] = result.state.weights["classifier.weight"]
        if rule == "fltrust":
            assert sum(result.resolved["root_set_per_domain"].values()) == 16
    assert not torch.allclose(finals["mean"], finals["fltrust"])
