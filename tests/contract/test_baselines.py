"""The baselines' and ablations' maths against hand-computed values and plain loops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from protofl.algorithms import AlgorithmContext, LocalStep, build_algorithm
from protofl.algorithms.base import aggregate_all
from protofl.algorithms.feddyn import LINEAR, linear_term_update, server_update
from protofl.algorithms.fedopt import fedadam_step
from protofl.algorithms.fedproc import prototype_weight
from protofl.algorithms.fpl import global_from_clusters
from protofl.algorithms.hooks import ClientInfo, ClientStart
from protofl.algorithms.losses import dynamic_regularizer, model_contrastive_loss, proximal_loss
from protofl.algorithms.moon import PREVIOUS
from protofl.algorithms.prototypes import cluster_prototypes, global_prototypes
from protofl.core.payloads import ClientUpdate, GlobalState, Prototypes, ServerMessage, StateDict
from protofl.federation.aggregation import is_parameter_entry

from recorded_runs import recorded_simulation


class Small(nn.Module):
    """features = BN(Linear(x)) (2-d), head = Linear: small enough to check by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(3, 2)
        self.bn = nn.BatchNorm1d(2)
        self.out = nn.Linear(2, 2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.body(x))

    def head(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(z)


CONTEXT = AlgorithmContext(num_classes=2, feature_dim=2, rounds=3)


def state_of(model: nn.Module, shift: float = 0.0) -> StateDict:
    """A copy of the model's state with every floating entry shifted by ``shift``."""
    return {
        k: (v + shift if v.is_floating_point() else v).detach().clone()
        for k, v in model.state_dict().items()
    }


def step_on(model: nn.Module, labels: list[int]) -> LocalStep:
    inputs = torch.randn(len(labels), 3, generator=torch.Generator().manual_seed(0))
    features = model.features(inputs)  # type: ignore[operator]
    logits = model.head(features)  # type: ignore[operator]
    return LocalStep(model, inputs, torch.tensor(labels), features, logits)


def client_round(name: str, model: nn.Module, message: ServerMessage, state: StateDict, **options):  # type: ignore[no-untyped-def]
    algorithm = build_algorithm(name, options, CONTEXT)
    return algorithm.start_client(ClientStart(message, model, state, ClientInfo("c0", "d")))


def update(client: str, weights: StateDict, samples: int, protos: Prototypes | None = None):  # type: ignore[no-untyped-def]
    return ClientUpdate(client, samples, weights, prototypes=protos)


# --- FedProx ---------------------------------------------------------------------------


def test_proximal_term_and_gradient_hand_computed() -> None:
    weights = [
        torch.tensor([1.0, 2.0], requires_grad=True),
        torch.tensor([3.0], requires_grad=True),
    ]
    anchors = [torch.tensor([0.0, 0.0]), torch.tensor([1.0])]
    loss = proximal_loss(weights, anchors, mu=0.1)
    assert loss.item() == pytest.approx(0.1 / 2 * (1 + 4 + 4))  # not the reference's x 0.01/2
    loss.backward()
    torch.testing.assert_close(weights[0].grad, torch.tensor([0.1, 0.2]))
    torch.testing.assert_close(weights[1].grad, torch.tensor([0.2]))


def test_fedprox_hooks_pull_every_trainable_parameter_towards_the_round_start() -> None:
    torch.manual_seed(0)
    model = Small()
    start = state_of(model, shift=-0.5)  # the global weights, 0.5 below the local ones
    hooks = client_round("fedprox", model, ServerMessage(1, start), {}, mu=0.2)
    term = hooks.loss_terms(step_on(model, [0, 1]))["proximal"]
    count = sum(p.numel() for p in model.parameters())
    assert term.item() == pytest.approx(0.2 / 2 * 0.25 * count, rel=1e-5)
    term.backward()
    for parameter in model.parameters():  # mu * (w - w_global) = 0.2 * 0.5
        torch.testing.assert_close(parameter.grad, torch.full_like(parameter, 0.1))


# --- MOON ------------------------------------------------------------------------------


def loop_moon(features, positive, negative, temperature):  # type: ignore[no-untyped-def]
    total = 0.0
    for z, zg, zp in zip(features.tolist(), positive.tolist(), negative.tolist(), strict=True):
        z, zg, zp = torch.tensor(z), torch.tensor(zg), torch.tensor(zp)
        sim_pos = torch.dot(z, zg) / (z.norm() * zg.norm()) / temperature
        sim_neg = torch.dot(z, zp) / (z.norm() * zp.norm()) / temperature
        total += -math.log(math.exp(sim_pos) / (math.exp(sim_pos) + math.exp(sim_neg)))
    return total / len(features)


def test_model_contrastive_loss_hand_computed_and_against_a_loop() -> None:
    one = model_contrastive_loss(
        torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]]), 0.5
    )
    assert one.item() == pytest.approx(math.log(1 + math.exp(-2)))  # cos 1 vs cos 0, tau 0.5
    generator = torch.Generator().manual_seed(1)
    z, zg, zp = (torch.randn(6, 4, generator=generator) for _ in range(3))
    value = model_contrastive_loss(z, zg, zp, 0.5).item()
    assert value == pytest.approx(loop_moon(z, zg, zp, 0.5), rel=1e-5)


def test_moon_round_one_has_no_term_then_uses_frozen_global_and_previous_models() -> None:
    torch.manual_seed(0)
    model = Small()
    message = ServerMessage(1, state_of(model))
    first = client_round("moon", model, message, {})
    assert first.loss_terms(step_on(model, [0, 1, 0]))["contrastive"].item() == 0.0
    private = first.finish(model, None).state
    assert set(private) == {PREVIOUS + k for k in model.state_dict()}
    previous = {k: v + 0.3 if v.is_floating_point() else v for k, v in private.items()}
    hooks = client_round("moon", model, ServerMessage(2, state_of(model, 0.1)), previous)
    global_model, previous_model = hooks.frozen
    assert not global_model.training and not previous_model.training
    assert not any(
        p.requires_grad for p in (*global_model.parameters(), *previous_model.parameters())
    )
    buffers = {k: v.clone() for k, v in previous_model.state_dict().items()}
    step = step_on(model, [0, 1, 0])
    term = hooks.loss_terms(step)["contrastive"]
    with torch.no_grad():
        expected = 5.0 * loop_moon(
            step.features,
            global_model.features(step.inputs),
            previous_model.features(step.inputs),
            0.5,
        )
    assert term.item() == pytest.approx(expected, rel=1e-5)
    for key, value in previous_model.state_dict().items():  # eval mode: stats not updated
        assert torch.equal(value, buffers[key]), key


# --- FedDyn ----------------------------------------------------------------------------


def test_feddyn_regularizer_acts_on_the_local_parameters_with_the_hand_computed_gradient() -> None:
    torch.manual_seed(0)
    model = Small()
    alpha = 0.1
    global_weights = state_of(model, shift=-1.0)  # w - w_global = 1 everywhere
    linear = {LINEAR + n: torch.full_like(p, 0.3) for n, p in model.named_parameters()}
    hooks = client_round("feddyn", model, ServerMessage(2, global_weights), linear, alpha=alpha)
    term = hooks.loss_terms(step_on(model, [0, 1]))["dynamic"]
    expected = sum(
        (-0.3 * p.detach().sum() + alpha / 2 * p.numel()).item() for p in model.parameters()
    )
    assert term.item() == pytest.approx(expected, rel=1e-5)
    term.backward()
    for parameter in model.parameters():  # -g + alpha * (w - w_global) = -0.3 + 0.1
        assert parameter.grad is not None and parameter.grad.abs().min() > 0
        torch.testing.assert_close(parameter.grad, torch.full_like(parameter, -0.2))
    state = hooks.finish(model, None).state  # g <- g - alpha * (w - w_global) = 0.3 - 0.1
    assert set(state) == set(linear)
    for value in state.values():
        torch.testing.assert_close(value, torch.full_like(value, 0.2))


def test_feddyn_pure_functions_hand_computed() -> None:
    g = dynamic_regularizer(
        [torch.tensor([2.0])], [torch.tensor([0.5])], [torch.tensor([1.0])], 0.4
    )
    assert g.item() == pytest.approx(-0.5 * 2.0 + 0.4 / 2 * 1.0)
    updated = linear_term_update(torch.tensor(0.5), torch.tensor(2.0), torch.tensor(1.0), 0.4)
    assert updated.item() == pytest.approx(0.1)


def test_feddyn_server_update_hand_computed_with_buffers_averaged() -> None:
    layer = nn.BatchNorm1d(1)
    base = state_of(layer)
    base["weight"].fill_(1.0)
    clients = []
    for value, mean, batches in ((2.0, 0.0, 3), (4.0, 1.0, 4)):
        weights = state_of(layer)
        weights["weight"].fill_(value)
        weights["running_mean"].fill_(mean)
        weights["num_batches_tracked"].fill_(batches)
        clients.append(weights)
    algorithm = build_algorithm("feddyn", {"alpha": 0.5}, CONTEXT)
    state = GlobalState(1, base, tensors={"h.weight": torch.tensor([0.2])})
    new = aggregate_all(algorithm, state, [update("a", clients[0], 1), update("b", clients[1], 3)])
    # mean 3; h = 0.2 - 0.5 * (3 - 1) = -0.8; w = 3 - (-0.8) / 0.5 = 4.6
    torch.testing.assert_close(new.tensors["h.weight"], torch.tensor([-0.8]))
    torch.testing.assert_close(new.weights["weight"], torch.tensor([4.6]))
    torch.testing.assert_close(new.weights["running_mean"], torch.tensor([0.75]))  # by samples
    assert new.weights["num_batches_tracked"].dtype == torch.int64
    assert "h.running_mean" not in new.tensors and "h.num_batches_tracked" not in new.tensors
    weight, h = server_update(torch.tensor(1.0), torch.tensor(3.0), torch.tensor(0.2), 0.5)
    assert (weight.item(), h.item()) == pytest.approx((4.6, -0.8))


def test_feddyn_server_h_is_the_mean_of_the_clients_linear_terms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With every client in every round and both starting at 0, h = (1/m) sum_i g_i."""
    simulation, _ = recorded_simulation("feddyn", monkeypatch, rounds=2)
    states = list(simulation.client_states.values())
    assert len(states) == 4
    for key, h in simulation.state.tensors.items():
        mean = torch.stack([s[LINEAR + key[2:]] for s in states]).mean(dim=0)
        torch.testing.assert_close(h, mean, rtol=1e-4, atol=1e-6)


# --- FedOpt (FedAdam) ------------------------------------------------------------------


def adam_by_hand(w: float, averages: list[float], lr: float, b1: float, b2: float, tau: float):  # type: ignore[no-untyped-def]
    """Reddi et al.'s Algorithm 2 on one scalar, written out: returns every round's w."""
    m = v = 0.0
    trajectory = []
    for average in averages:
        delta = average - w
        m = b1 * m + (1 - b1) * delta
        v = b2 * v + (1 - b2) * delta * delta
        w = w + lr * m / (math.sqrt(v) + tau)
        trajectory.append(w)
    return trajectory


def test_fedadam_step_hand_computed() -> None:
    new, m, v = fedadam_step(
        torch.tensor(1.0),
        torch.tensor(0.5),
        torch.tensor(0.0),
        torch.tensor(0.0),
        0.01,
        0.9,
        0.99,
        1e-3,
    )
    assert (m.item(), v.item()) == pytest.approx((0.05, 0.0025))
    assert new.item() == pytest.approx(1.0 - 0.01 * 0.05 / (0.05 + 1e-3))


def test_fedopt_server_matches_a_hand_written_adam_and_averages_buffers() -> None:
    layer = nn.BatchNorm1d(1)
    state = GlobalState(0, state_of(layer))
    state.weights["weight"].fill_(1.0)
    algorithm = build_algorithm("fedopt", {}, CONTEXT)
    rounds = [((0.2, 0.6), (1.0, 3.0)), ((0.9, 1.1), (2.0, 2.0))]  # (client weights, means)
    averages = []
    for values, means in rounds:
        updates = []
        for index, (value, mean) in enumerate(zip(values, means, strict=True)):
            weights = state_of(layer)
            weights["weight"].fill_(value)
            weights["running_mean"].fill_(mean)
            weights["num_batches_tracked"].fill_(index + 1)
            updates.append(update(f"c{index}", weights, samples=1 + 2 * index))
        averages.append((values[0] + 3 * values[1]) / 4)  # sample-weighted
        message = algorithm.message(state)
        assert set(vars(message)) == {"round", "weights", "prototypes"}  # moments stay here
        state = aggregate_all(algorithm, state, updates)
        torch.testing.assert_close(
            state.weights["running_mean"], torch.tensor([(means[0] + 3 * means[1]) / 4])
        )
        assert state.weights["num_batches_tracked"].dtype == torch.int64
        assert state.weights["num_batches_tracked"].item() == 2  # 1.75 rounded, an integer
    expected = adam_by_hand(1.0, averages, lr=0.01, b1=0.9, b2=0.99, tau=1e-3)[-1]
    assert state.weights["weight"].item() == pytest.approx(expected, rel=1e-6)
    assert set(state.tensors) == {"m.weight", "v.weight", "m.bias", "v.bias"}


def test_only_parameters_are_optimised_on_the_server() -> None:
    layer = nn.BatchNorm1d(2)
    kinds = {k: is_parameter_entry(k, v, frozenset()) for k, v in layer.state_dict().items()}
    assert kinds == {
        "weight": True,
        "bias": True,
        "running_mean": False,
        "running_var": False,
        "num_batches_tracked": False,
    }


# --- FedProc ---------------------------------------------------------------------------


def test_fedproc_alpha_falls_linearly_from_one_to_zero() -> None:
    assert [prototype_weight(t, 5) for t in range(1, 6)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert prototype_weight(1, 1) == 1.0  # a single round: no division by zero


def loop_fedproc(features, labels, prototypes, prototype_labels):  # type: ignore[no-untyped-def]
    """The reference's per-sample InfoNCE at temperature 1: -log(e^cos+ / sum e^cos), / B."""
    total = 0.0
    for z, y in zip(features, labels, strict=True):
        sims = [F.cosine_similarity(z, p, dim=0).item() for p in prototypes]
        positive = [
            math.exp(s) for s, c in zip(sims, prototype_labels.tolist(), strict=True) if c == y
        ]
        if positive:
            total += -math.log(sum(positive) / sum(math.exp(s) for s in sims))
    return total / len(features)


def test_fedproc_client_weights_ce_and_contrast_by_the_round() -> None:
    torch.manual_seed(0)
    model = Small()
    first = client_round("fedproc", model, ServerMessage(1, state_of(model)), {})
    assert first.ce_weight == 1.0  # no prototypes yet: plain CE (the reference trains nothing)
    prototypes = Prototypes(
        torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]), torch.tensor([5, 5])
    )
    message = ServerMessage(2, state_of(model), prototypes=prototypes)  # round 2 of 3
    hooks = client_round("fedproc", model, message, {})
    assert hooks.ce_weight == pytest.approx(0.5)
    step = step_on(model, [0, 1, 1, 0])
    term = hooks.loss_terms(step)["contrastive"].item()
    expected = 0.5 * loop_fedproc(
        step.features.detach(), [0, 1, 1, 0], prototypes.vectors, prototypes.labels
    )
    assert term == pytest.approx(expected, rel=1e-5)


def test_fedproc_and_fedproto_server_prototypes() -> None:
    local = [
        Prototypes(
            torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 1]), torch.tensor([1, 3])
        ),
        Prototypes(torch.tensor([[3.0, 0.0]]), torch.tensor([0]), torch.tensor([3])),
    ]
    updates = [update("a", {}, 4, local[0]), update("b", {}, 3, local[1])]
    plain = global_prototypes(Prototypes.concat(local), 2, weighted=False)
    weighted = global_prototypes(Prototypes.concat(local), 2, weighted=True)
    torch.testing.assert_close(plain.vectors, torch.tensor([[2.0, 0.0], [0.0, 2.0]]))
    torch.testing.assert_close(weighted.vectors, torch.tensor([[2.5, 0.0], [0.0, 2.0]]))
    assert plain.labels.tolist() == [0, 1] and plain.support.tolist() == [4, 3]
    for name, expected in (("fedproc", plain), ("fedproto", weighted)):
        algorithm = build_algorithm(name, {}, CONTEXT)
        states = [{"w": torch.tensor([1.0])}, {"w": torch.tensor([2.0])}]
        real = [
            update(u.client_id, s, u.num_samples, u.prototypes)
            for u, s in zip(updates, states, strict=True)
        ]
        new = aggregate_all(algorithm, GlobalState(1, {"w": torch.tensor([0.0])}), real)
        assert new.prototypes is not None
        torch.testing.assert_close(new.prototypes.vectors, expected.vectors)
        torch.testing.assert_close(new.weights["w"], torch.tensor([(4 * 1.0 + 3 * 2.0) / 7]))
        assert algorithm.message(new).prototypes is new.prototypes


# --- FedProto --------------------------------------------------------------------------


def test_fedproto_term_is_the_references_mse_to_the_global_prototype() -> None:
    torch.manual_seed(0)
    model = Small()
    prototypes = Prototypes(torch.tensor([[0.5, -0.5]]), torch.tensor([0]), torch.tensor([9]))
    message = ServerMessage(2, state_of(model), prototypes=prototypes)
    hooks = client_round("fedproto", model, message, {}, proto_weight=2.0)
    step = step_on(model, [0, 1, 0])  # class 1 has no global prototype
    term = hooks.loss_terms(step)["proto"]
    target = step.features.detach().clone()  # the reference: f_new = f.data, rows replaced
    target[[0, 2]] = prototypes.vectors[0]
    assert term.item() == pytest.approx(2.0 * F.mse_loss(target, step.features).item(), rel=1e-6)
    first = client_round("fedproto", model, ServerMessage(1, state_of(model)), {})
    assert first.loss_terms(step)["proto"].item() == 0.0


# --- FPL ablations ---------------------------------------------------------------------


def local_prototypes() -> Prototypes:
    """Class 0: three clients' prototypes point one way, two another (two "domains", so FINCH
    finds two clusters of unequal size and U differs from G); class 1: five random."""
    generator = torch.Generator().manual_seed(3)
    directions = torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 3 + [[0.0, 1.0, 0.0, 0.0]] * 2)
    class_zero = directions * 5 + 0.1 * torch.randn(5, 4, generator=generator)
    class_one = torch.randn(5, 4, generator=generator)
    labels = torch.tensor([0] * 5 + [1] * 5)
    support = torch.randint(1, 50, (len(labels),), generator=generator)
    return Prototypes(torch.cat([class_zero, class_one]), labels, support)


def test_global_prototype_from_clusters_is_the_plain_mean_of_local_prototypes() -> None:
    local = local_prototypes()
    clusters = cluster_prototypes(local)
    assert sorted(clusters.support[clusters.labels == 0].tolist()) == [2, 3]
    means, has = global_from_clusters(clusters, 3)
    assert has.tolist() == [True, True, False]
    for cls in (0, 1):  # Eq. 3: plain mean over clients, sample counts ignored
        torch.testing.assert_close(means[cls], local.vectors[local.labels == cls].mean(dim=0))


def fpl_hooks(name: str, clusters: Prototypes):  # type: ignore[no-untyped-def]
    context = AlgorithmContext(num_classes=2, feature_dim=4, rounds=3)
    model = nn.Linear(4, 4)
    message = ServerMessage(2, model.state_dict(), prototypes=clusters)
    return build_algorithm(name, {}, context).start_client(
        ClientStart(message, model, {}, ClientInfo("c", "d"))
    )


def test_fpl_ablation_targets() -> None:
    local = local_prototypes()
    clusters = cluster_prototypes(local)
    plain_mean = torch.stack([local.vectors[local.labels == c].mean(dim=0) for c in (0, 1)])
    unbiased = torch.stack([clusters.vectors[clusters.labels == c].mean(dim=0) for c in (0, 1)])
    assert not torch.allclose(plain_mean, unbiased)
    full = fpl_hooks("fpl", clusters)
    torch.testing.assert_close(full.unbiased, unbiased)
    assert full.contrast[0] is clusters.vectors
    consistency = fpl_hooks("fpl-global-consistency", clusters)
    torch.testing.assert_close(consistency.unbiased, plain_mean)
    assert consistency.config.cpcl_weight == 0.0
    contrast = fpl_hooks("fpl-global-contrast", clusters)
    torch.testing.assert_close(contrast.contrast[0], plain_mean)
    assert contrast.contrast[1].tolist() == [0, 1]
    assert contrast.config.upcr_weight == 0.0
    features = torch.randn(5, 4, generator=torch.Generator().manual_seed(0)).relu() + 0.1
    labels = [0, 1, 1, 0, 0]
    step = LocalStep(nn.Identity(), features, torch.tensor(labels), features, features)
    cpcl = contrast.loss_terms(step)["cpcl"].item()
    # one positive per class: InfoNCE = cross-entropy over cosine / temperature to each G
    logits = F.normalize(features, dim=1) @ F.normalize(plain_mean, dim=1).T / 0.02
    assert cpcl == pytest.approx(F.cross_entropy(logits, torch.tensor(labels)).item(), rel=1e-5)


def test_feddyn_h_counts_every_client_of_the_federation() -> None:
    """h <- h - alpha * (1/m) * sum over the arrived clients; with half of the m clients
    arrived, the sum over them is half the mean's change (Acar et al., Algorithm 1)."""
    from protofl.algorithms.feddyn import server_update

    current, mean, h = torch.tensor([1.0]), torch.tensor([3.0]), torch.tensor([0.5])
    full_weight, full_h = server_update(current, mean, h, alpha=0.1)
    half_weight, half_h = server_update(current, mean, h, alpha=0.1, participation=0.5)
    assert full_h.item() == pytest.approx(0.5 - 0.1 * 2.0)
    assert half_h.item() == pytest.approx(0.5 - 0.1 * 0.5 * 2.0)
    assert half_weight.item() == pytest.approx(3.0 - half_h.item() / 0.1, abs=1e-5)
    assert full_weight.item() == pytest.approx(3.0 - full_h.item() / 0.1, abs=1e-5)
