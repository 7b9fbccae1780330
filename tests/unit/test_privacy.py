"""Prototype privacy: clipping, noise scale, seeding, and the accountant's numbers."""

from __future__ import annotations

import math

import pytest
import torch

from protofl.errors import ConfigError
from protofl.payloads import Prototypes
from protofl.privacy import PrototypePrivacy, clip_rows, epsilons, privatize


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
