"""Prototype privacy: clipping, noise scale, seeding, and the accountant's numbers."""

from __future__ import annotations

import math

import pytest
import torch

from protofl.core.payloads import Prototypes
from protofl.errors import ConfigError
from protofl.federation.privacy import PrototypePrivacy, clip_rows, epsilons, privatize


def test_clip_rows_hand_computed() -> None:
    vectors = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    clipped = clip_rows(vectors, 1.0)
    torch.testing.assert_close(clipped, torch.tensor([[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]]))


def test_noise_has_the_stated_scale_and_is_seeded() -> None:
    prototypes = Prototypes(torch.zeros(2000, 50), torch.zeros(2000, dtype=torch.int64),
                            torch.ones(2000, dtype=torch.int64))  # fmt: skip
    privacy = PrototypePrivacy(clip_norm=2.0, noise_multiplier=0.5)
    first = privatize(prototypes, privacy, torch.Generator().manual_seed(1))
    again = privatize(prototypes, privacy, torch.Generator().manual_seed(1))
    assert torch.equal(first.vectors, again.vectors)
    assert first.vectors.std().item() == pytest.approx(1.0, rel=0.02)  # 0.5 x 2.0
    assert torch.equal(first.labels, prototypes.labels)
    assert torch.equal(prototypes.vectors, torch.zeros(2000, 50))  # input untouched


def test_disabled_privacy_changes_nothing() -> None:
    prototypes = Prototypes(torch.ones(1, 3), torch.tensor([0]), torch.tensor([1]))
    assert privatize(prototypes, PrototypePrivacy(), torch.Generator()) is prototypes


def test_epsilon_of_one_gaussian_release_and_composition() -> None:
    one, five = (
        epsilons(PrototypePrivacy(1.0, 1.0, 1e-5), 5)[0],
        epsilons(PrototypePrivacy(1.0, 1.0, 1e-5), 5)[-1],
    )
    # the classical bound for one Gaussian mechanism, sigma = sqrt(2 ln(1.25/delta)) / eps,
    # gives eps ~ 4.84 at sigma = 1; RDP accounting is a little tighter
    assert 3.5 < one < math.sqrt(2 * math.log(1.25 / 1e-5))
    assert five > one
    more_noise = epsilons(PrototypePrivacy(1.0, 4.0, 1e-5), 5)[-1]
    assert more_noise < five


def test_bad_settings_are_explained() -> None:
    from protofl import RunConfig

    with pytest.raises(ConfigError, match="set privacy_clip_norm too"):
        RunConfig(privacy_clip_norm=0.0, privacy_noise_multiplier=1.0)
    with pytest.raises(ConfigError, match="privacy_delta"):
        RunConfig(privacy_clip_norm=1.0, privacy_delta=2.0)


def test_a_private_run_reports_its_budget() -> None:
    from protofl import RunConfig, train_federated

    from tiny_data import TinyNet, tiny_clients

    clients, tests = tiny_clients()
    config = RunConfig(rounds=2, local_epochs=1, batch_size=16, precision="fp32",
                       privacy_clip_norm=1.0, privacy_noise_multiplier=1.0)  # fmt: skip
    result = train_federated(clients, tests, TinyNet(), config)
    spent = [r.privacy_epsilon for r in result.history]
    assert spent == pytest.approx(epsilons(PrototypePrivacy(1.0, 1.0), 2))
    assert result.resolved["privacy_epsilon_planned"] == pytest.approx(spent[-1])


def private_update(noise: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One FPL client round on tiny data: (uploaded prototypes, the clean ones)."""
    import dataclasses

    from protofl import RunConfig
    from protofl.builders import algorithm_for, local_settings, privacy_of
    from protofl.data.user import federation_from_arrays
    from protofl.engine.client import copy_state, run_client_round

    from tiny_data import TinyNet, tiny_clients

    clients, tests = tiny_clients(per_client=24)
    federation = federation_from_arrays(clients, tests, None, False)
    config = RunConfig(rounds=1, local_epochs=1, batch_size=16, precision="fp32", seed=7,
                       privacy_clip_norm=1.0, privacy_noise_multiplier=1.0,
                       privacy_noise=noise)  # fmt: skip
    torch.manual_seed(0)
    model = TinyNet()
    example = federation.clients[0].transform.eval(federation.clients[0].source.inputs[:2])
    algorithm, _ = algorithm_for(config, model, example, 4, len(federation.clients))
    state = algorithm.init_state(copy_state(model))
    message = algorithm.message(state)
    uploaded = []
    for privacy in (privacy_of(config), dataclasses.replace(privacy_of(config), clip_norm=0.0)):
        worker = TinyNet()
        update, _ = run_client_round(
            algorithm, worker, federation.clients[0], 0, message, {},
            local_settings(config), config.seed, privacy=privacy,
        )  # fmt: skip
        assert update.prototypes is not None
        uploaded.append(update.prototypes.vectors)
    return uploaded[0], clip_rows(uploaded[1], 1.0)


def test_the_server_cannot_remove_the_noise_by_regenerating_it_from_the_seed() -> None:
    """The server knows the run's seed. By default the noise does not come from it: drawing
    the seed-derived noise and subtracting it leaves the prototypes as noisy as before."""
    from protofl.core.seeding import derive_seed

    noisy, clean = private_update("secure")
    guess = torch.randn(noisy.shape, generator=torch.Generator().manual_seed(
        derive_seed(7, "privacy", 0, 1)))  # fmt: skip
    error_before = (noisy - clean).norm().item()
    error_after = (noisy - guess - clean).norm().item()
    assert error_before > 1.0 and error_after > error_before  # noise of std 1 per coordinate
    again, _ = private_update("secure")
    assert not torch.equal(noisy, again)  # a fresh secret draw each time


def test_seeded_noise_is_reproducible_and_removable_as_its_warning_says() -> None:
    from protofl.core.seeding import derive_seed

    noisy, clean = private_update("seeded")
    again, _ = private_update("seeded")
    assert torch.equal(noisy, again)
    guess = torch.randn(noisy.shape, generator=torch.Generator().manual_seed(
        derive_seed(7, "privacy", 0, 1)))  # fmt: skip
    assert (noisy - guess - clean).norm().item() < 1e-4


def test_a_seeded_private_run_says_its_epsilon_does_not_hold(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from protofl import RunConfig, train_federated

    from tiny_data import TinyNet, tiny_clients

    clients, tests = tiny_clients(per_client=24)
    config = RunConfig(rounds=1, local_epochs=1, batch_size=16, precision="fp32",
                       privacy_clip_norm=1.0, privacy_noise_multiplier=1.0,
                       privacy_noise="seeded")  # fmt: skip
    result = train_federated(clients, tests, TinyNet, config)
    assert "holds against nobody who knows the seed" in result.resolved["privacy_warning"]
    assert "holds against nobody who knows the seed" in caplog.text
    with pytest.raises(ConfigError, match="privacy_noise must be 'secure'"):
        RunConfig(privacy_noise="random")
