"""Optional differential privacy for uploaded prototypes: per-class clipping + Gaussian noise.

Each local prototype (a class's mean feature on one client) is scaled down to L2 norm at
most ``clip_norm`` and gets Gaussian noise of standard deviation
``noise_multiplier * clip_norm`` before it leaves the client. This is the Gaussian mechanism
with sensitivity ``clip_norm`` for the unit *one client's data of one class* under
add/remove adjacency; a client's classes are disjoint, so one round costs one mechanism,
and rounds compose. The cost is reported by Opacus's RDP accountant
(``pip install protofl[privacy]``).

What this does *not* protect: the model weights, which clients still send in the clear, and
the per-class sample counts sent as ``support``. It limits what the prototypes add; a full
guarantee needs DP on the weights too (e.g. DP-SGD), which protofl does not provide.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import torch

from protofl.core.payloads import Prototypes
from protofl.core.seeding import derive_seed, torch_generator
from protofl.errors import ConfigError


@dataclass(frozen=True)
class PrototypePrivacy:
    """Clipping norm and noise multiplier; ``clip_norm = 0`` switches the mechanism off.

    Checked where they enter, in :class:`~protofl.config.RunConfig`; trusted here.
    """

    clip_norm: float = 0.0
    noise_multiplier: float = 0.0
    delta: float = 1e-5
    seeded: bool = False  # noise reproducible from the run's seed: see noise_generator

    @property
    def enabled(self) -> bool:
        return self.clip_norm > 0


SEEDED_NOISE_WARNING = (
    "privacy_noise='seeded': the prototype noise is drawn from the run's seed, so anyone who "
    "knows the seed (the server does) can regenerate and remove it; the reported "
    "privacy_epsilon holds against nobody who knows the seed. For tests and reproducing a run "
    "only."
)


def noise_generator(privacy: PrototypePrivacy, seed: int, *path: int | str) -> torch.Generator:
    """The CPU generator of a client's noise in one round.

    By default it is seeded from the operating system's secure randomness (63 bits, never
    written anywhere), so nobody can regenerate the noise from the run's configuration: the
    server, which knows the seed, is exactly who the noise must hide the prototypes from. With
    ``seeded`` it is derived from the run's seed and ``path`` (reproducible, and removable).
    """
    if privacy.seeded:
        return torch_generator(derive_seed(seed, "privacy", *path), "cpu")
    return torch_generator(secrets.randbits(63), "cpu")


def clip_rows(vectors: torch.Tensor, clip_norm: float) -> torch.Tensor:
    """Scale each row of [P, D] to L2 norm at most ``clip_norm`` (shorter rows unchanged)."""
    norms = vectors.norm(dim=1, keepdim=True)  # [P, 1]
    return vectors * (clip_norm / norms.clamp(min=clip_norm))


def privatize(
    prototypes: Prototypes, privacy: PrototypePrivacy, generator: torch.Generator
) -> Prototypes:
    """Clipped and noised copies of ``prototypes`` (the input is left as it was)."""
    if not privacy.enabled:
        return prototypes
    clipped = clip_rows(prototypes.vectors, privacy.clip_norm)
    # drawn where the generator lives, then moved: any pairing of devices works
    noise = torch.randn(
        clipped.shape, generator=generator, device=generator.device, dtype=clipped.dtype
    ).to(clipped.device)
    noised = clipped + noise * (privacy.noise_multiplier * privacy.clip_norm)
    return prototypes.with_vectors(noised)


# Opacus's default RDP orders start at 1.1; small noise multipliers have their best bound
# below that, so smaller orders are added in front.
RDP_ORDERS = (
    [1.001, 1.005, 1.01, 1.02, 1.05] + [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
)


def epsilons(privacy: PrototypePrivacy, rounds: int) -> list[float]:
    """The privacy budget spent after each of ``rounds`` rounds (epsilon at ``delta``)."""
    if not privacy.enabled or privacy.noise_multiplier == 0:
        return [float("inf")] * rounds
    try:
        from opacus.accountants import RDPAccountant
    except ImportError as err:
        raise ConfigError(
            "accounting the prototype privacy cost needs Opacus: pip install 'protofl[privacy]'."
        ) from err
    accountant = RDPAccountant()
    spent = []
    for _ in range(rounds):
        accountant.step(noise_multiplier=privacy.noise_multiplier, sample_rate=1.0)
        spent.append(float(accountant.get_epsilon(delta=privacy.delta, alphas=RDP_ORDERS)))
    return spent
