"""FedPLVM on the shared loop: local clusters from the last epoch's features, global FINCH at
the server, the loss terms from round 2 (the maths itself: tests/unit/test_successor_maths)."""

from __future__ import annotations

import pytest
import torch

from protofl import RunConfig, train_federated
from protofl.algorithms import AlgorithmContext, build_algorithm
from protofl.algorithms.base import aggregate_all
from protofl.algorithms.fedplvm_maths import local_cluster_prototypes
from protofl.algorithms.hooks import ClientInfo, ClientStart, LocalStep
from protofl.core.payloads import ClientUpdate, GlobalState, Prototypes, ServerMessage
from protofl.errors import ConfigError

from tiny_data import TinyNet, tiny_clients


def test_client_clusters_only_its_last_epoch_features() -> None:
    algorithm = build_algorithm("fedplvm", {}, AlgorithmContext(3, 2, 2))
    model = TinyNet(classes=3)
    message = ServerMessage(1, model.state_dict())
    hooks = algorithm.start_client(ClientStart(message, model, {}, ClientInfo("c", "d")))
    early = torch.tensor([[9.0, 9.0], [9.0, -9.0]])
    late = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    for features, labels, last in (
        (early, torch.tensor([0, 1]), False),
        (late, torch.tensor([0, 0, 2]), True),
    ):
        terms = hooks.loss_terms(LocalStep(model, features, labels, features, features, last))
        assert set(terms) == {"alpha", "correction"} and float(sum(terms.values())) == 0.0
    sent = hooks.finish(model, None).prototypes
    expected = local_cluster_prototypes(late, torch.tensor([0, 0, 2]), 3)
    assert sent is not None
    torch.testing.assert_close(sent.vectors, expected.vectors)
    assert sent.labels.tolist() == [0, 2] and sent.support.tolist() == [2, 1]


def test_server_clusters_the_clients_local_clusters_and_weights_are_fedavg() -> None:
    algorithm = build_algorithm("fedplvm", {}, AlgorithmContext(2, 2, 2))
    a = Prototypes(
        torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]), torch.tensor([3, 3])
    )
    b = Prototypes(torch.tensor([[0.9, 0.1]]), torch.tensor([0]), torch.tensor([2]))
    updates = [
        ClientUpdate("a", 1, {"w": torch.tensor([0.0])}, a),
        ClientUpdate("b", 3, {"w": torch.tensor([4.0])}, b),
    ]
    new = aggregate_all(algorithm, GlobalState(0, {"w": torch.tensor([9.0])}), updates)
    torch.testing.assert_close(new.weights["w"], torch.tensor([3.0]))
    assert new.prototypes is not None
    # class 0: two local clusters (1, 0) and (0.9, 0.1) -> FINCH with two points: one cluster
    assert new.prototypes.labels.tolist() == [0, 1]
    torch.testing.assert_close(new.prototypes.vectors[0], torch.tensor([0.95, 0.05]))


def test_losses_start_in_round_two_and_options_are_checked() -> None:
    clients, tests = tiny_clients()
    torch.manual_seed(0)
    config = RunConfig(
        algorithm="fedplvm", rounds=2, local_epochs=1, batch_size=16, precision="fp32"
    )
    result = train_federated(clients, tests, TinyNet(), config)
    first, second = result.history
    assert first.train["alpha"] == 0.0 and second.train["alpha"] > 0.0
    assert second.train["correction"] > 0.0 and second.num_prototypes >= 4
    with pytest.raises(ConfigError, match=r"fedplvm\.negative"):
        RunConfig(algorithm_options={"fedplvm": {"negative": "abs"}})
    with pytest.raises(ConfigError, match=r"alpha and fedplvm\.temperature must be > 0"):
        RunConfig(algorithm_options={"fedplvm": {"alpha": 0.0}})
