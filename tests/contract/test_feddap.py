"""FedDAP on the shared loop: domain-tagged prototypes from client to server and back, the
per-(class, domain) merge, the loss terms from round 2 (the maths: tests/unit)."""

from __future__ import annotations

import pytest
import torch

from protofl import RunConfig, train_federated
from protofl.algorithms import AlgorithmContext, build_algorithm
from protofl.algorithms.base import aggregate_all
from protofl.algorithms.hooks import ClientInfo, ClientStart
from protofl.core.payloads import ClientUpdate, GlobalState, Prototypes, ServerMessage, domain_id
from protofl.errors import PayloadError

from tiny_data import TinyNet, tiny_clients


def test_domain_ids_are_stable_and_distinct() -> None:
    assert domain_id("amazon") == domain_id("amazon") != domain_id("dslr")
    assert 0 <= domain_id("caltech") < 2**31


def test_client_tags_its_prototypes_with_its_domain_and_adds_small_seeded_noise() -> None:
    algorithm = build_algorithm("feddap", {"noise_std": 0.5}, AlgorithmContext(3, 2, 2, seed=7))
    model = TinyNet(classes=3)
    message = ServerMessage(1, model.state_dict())
    means = Prototypes(torch.zeros(2, 2), torch.tensor([0, 2]), torch.tensor([1, 100]))
    sent = []
    for _ in range(2):
        hooks = algorithm.start_client(ClientStart(message, model, {}, ClientInfo("a-0", "amazon")))
        sent.append(hooks.finish(model, means).prototypes)
    first, again = sent
    assert first is not None and again is not None and first.domains is not None
    assert first.domains.tolist() == [domain_id("amazon")] * 2
    torch.testing.assert_close(first.vectors, again.vectors)  # seeded by run, client, round
    noise = first.vectors.abs()
    assert noise[0].max() > 0 and noise[1].max() < noise[0].max()  # std / support


def test_server_merges_per_class_and_domain_and_keeps_the_tags() -> None:
    config = {"merge_temperature": 1e6}  # a flat softmax: the merge is the plain mean
    algorithm = build_algorithm("feddap", config, AlgorithmContext(2, 2, 2))
    a, b = domain_id("a"), domain_id("b")

    def sent(vector: list[float], label: int, domain: int) -> Prototypes:
        return Prototypes(
            torch.tensor([vector]), torch.tensor([label]), torch.tensor([5]), torch.tensor([domain])
        )

    updates = [
        ClientUpdate("a0", 1, {"w": torch.zeros(1)}, sent([1.0, 0.0], 0, a)),
        ClientUpdate("a1", 1, {"w": torch.zeros(1)}, sent([0.0, 1.0], 0, a)),
        ClientUpdate("b0", 1, {"w": torch.zeros(1)}, sent([2.0, 2.0], 0, b)),
    ]
    new = aggregate_all(algorithm, GlobalState(0, {"w": torch.zeros(1)}), updates)
    merged = new.prototypes
    assert merged is not None and merged.domains is not None
    by_domain = {int(d): v for d, v in zip(merged.domains, merged.vectors, strict=True)}
    torch.testing.assert_close(by_domain[a], torch.tensor([0.5, 0.5]), atol=1e-5, rtol=0)
    torch.testing.assert_close(by_domain[b], torch.tensor([2.0, 2.0]))
    support = {int(d): int(s) for d, s in zip(merged.domains, merged.support, strict=True)}
    assert support == {a: 2, b: 1}  # members merged


def test_tagged_and_untagged_sets_do_not_mix() -> None:
    tagged = Prototypes(torch.zeros(1, 2), torch.tensor([0]), torch.tensor([1]), torch.tensor([3]))
    plain = Prototypes(torch.zeros(1, 2), torch.tensor([0]), torch.tensor([1]))
    with pytest.raises(PayloadError, match="domain tags"):
        Prototypes.concat([tagged, plain])


def test_losses_start_in_round_two() -> None:
    clients, tests = tiny_clients()
    torch.manual_seed(0)
    config = RunConfig(algorithm="feddap", rounds=2, local_epochs=1, batch_size=16)
    first, second = train_federated(clients, tests, TinyNet(), config).history
    assert first.train["dpa"] == 0.0 and first.train["cross_contrast"] == 0.0
    assert second.train["dpa"] > 0.0 and second.train["cross_contrast"] > 0.0
    assert second.num_prototypes == 8  # 4 classes x 2 domains
