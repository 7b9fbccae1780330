"""The pixel-trigger backdoor: poisoned training data on the liars, its success scored.

BadNets-style (Gu et al., 2017; in federated learning, Bagdasaryan et al., AISTATS 2020):
each liar replaces a seeded ``backdoor_fraction`` of its training samples by copies that
carry the trigger, a white square in the bottom-right corner of side ``max(1, side // 8)``
(4 pixels at 32 x 32), relabelled ``backdoor_target``; it trains and reports as usual on
that data. The trigger goes on the stored uint8 image, before augmentation, so random crops
and flips move it as they move the image. The attack success rate is the share of the test
images whose true class is not the target that the global model, with the trigger added,
assigns to the target, pooled over the domains' test splits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from protofl.core.seeding import derive_seed, torch_generator
from protofl.engine.data import ClientData, TensorSet, TestSet
from protofl.errors import ConfigError

WHITE = 255  # stored images are uint8


def trigger_side(height: int, width: int) -> int:
    return max(1, min(height, width) // 8)


def with_trigger(images: torch.Tensor) -> torch.Tensor:
    """A copy of uint8 ``images`` [N, C, H, W] with the white corner square."""
    side = trigger_side(images.shape[-2], images.shape[-1])
    marked = images.clone()
    marked[..., -side:, -side:] = WHITE
    return marked


def check_backdoor(inputs: torch.Tensor, target: int, num_classes: int) -> None:
    """Refuse a backdoor the data cannot carry: it needs uint8 images and a real class."""
    if inputs.dtype != torch.uint8 or inputs.ndim != 4:
        raise ConfigError(
            "attack='backdoor' needs image data (uint8 [N, C, H, W]) to stamp its pixel "
            f"trigger on; this benchmark's inputs are {inputs.dtype} {tuple(inputs.shape)}."
        )
    if not 0 <= target < num_classes:
        raise ConfigError(f"backdoor_target must be a class in [0, {num_classes}); got {target}.")


def poisoned_choice(count: int, fraction: float, seed: int, client_id: str) -> torch.Tensor:
    """Which ``round(fraction x count)`` of a liar's ``count`` samples carry the trigger: a
    seeded draw without replacement, per client. [k] int64"""
    generator = torch_generator(derive_seed(seed, "backdoor", client_id), "cpu")
    return torch.randperm(count, generator=generator)[: round(fraction * count)]


def backdoored(client: ClientData, target: int, fraction: float, seed: int) -> ClientData:
    """The client with its own copy of its samples, the :func:`poisoned_choice` of them
    triggered and relabelled ``target``; the shared data of the honest clients untouched."""
    inputs = client.source.inputs[client.indices].clone()  # [n, C, H, W]
    labels = client.source.labels[client.indices].clone()  # [n]
    chosen = poisoned_choice(len(labels), fraction, seed, client.client_id).to(labels.device)
    inputs[chosen] = with_trigger(inputs[chosen])
    labels[chosen] = target
    indices = torch.arange(len(labels), device=client.indices.device)
    return dataclasses.replace(client, source=TensorSet(inputs, labels), indices=indices)


def triggered_test_sets(test_sets: Sequence[TestSet], target: int) -> tuple[TestSet, ...]:
    """Each domain's test images whose class is not ``target``, triggered and labelled
    ``target``: the accuracy on them is the attack's success."""
    sets = []
    for test_set in test_sets:
        keep = test_set.data.labels != target
        inputs = with_trigger(test_set.data.inputs[keep])
        labels = torch.full_like(test_set.data.labels[keep], target)
        sets.append(TestSet(test_set.domain, TensorSet(inputs, labels), test_set.transform))
    return tuple(sets)


def attack_success_rate(hits: dict[str, float], test_sets: Sequence[TestSet]) -> float:
    """Pooled over domains: per-domain shares of ``hits`` weighted by their test sizes."""
    sizes = {test_set.domain: len(test_set.data) for test_set in test_sets}
    total = sum(sizes.values())
    return sum(hits[d] * sizes[d] for d in sizes) / total if total else 0.0
