"""The settings of malicious clients and robust aggregation: the names of the weight rules,
prototype rules, attacks and perturbations, and the checks ``RunConfig`` runs on them. Kept
free of torch, like the rest of ``protofl.config``; the modules that carry them out import
these names (or a test holds their own lists equal)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from protofl.core.registry import unknown_name_message
from protofl.errors import ConfigError

if TYPE_CHECKING:
    from protofl.config import RunConfig

BACKDOOR_TARGET, BACKDOOR_FRACTION = 0, 0.3  # RunConfig's defaults


# protofl.federation.rules.make_combiner (RULES there; a test holds them equal)
WEIGHT_RULES = (
    "mean",
    "median",
    "trimmed-mean",
    "krum",
    "multi-krum",
    "geometric-median",
    "rfa",
    "bulyan",
    "norm-clip",
    "fltrust",
)


def check_aggregation(config: RunConfig) -> None:
    """The weight rule, the prototype rule, their options, and the attack."""
    if config.aggregation not in WEIGHT_RULES:
        raise ConfigError(
            unknown_name_message("aggregation", config.aggregation, list(WEIGHT_RULES))
        )
    if not 0 <= config.trim_fraction < 0.5:
        raise ConfigError(f"trim_fraction must lie in [0, 0.5); got {config.trim_fraction}.")
    check_attack(config)
    if not (math.isfinite(config.clip_norm) and config.clip_norm >= 0):
        raise ConfigError(
            f"clip_norm must be >= 0 (0: the median of the round's update norms); got "
            f"{config.clip_norm}."
        )
    if config.root_size < 1:
        raise ConfigError(
            f"root_size must be >= 1 (FLTrust's paper uses 100); got {config.root_size}."
        )
    if config.prototype_aggregation not in PROTOTYPE_RULES:
        raise ConfigError(
            unknown_name_message(
                "prototype_aggregation", config.prototype_aggregation, list(PROTOTYPE_RULES)
            )
        )
    if not (math.isfinite(config.prototype_min_cosine) and -1 <= config.prototype_min_cosine <= 1):
        raise ConfigError(
            f"prototype_min_cosine must lie in [-1, 1]; got {config.prototype_min_cosine}."
        )
    screen = config.distance_screen
    if not (math.isfinite(screen) and (screen == 0 or screen >= 1)):
        raise ConfigError(
            f"distance_screen must be 0 (off) or >= 1 (a multiple of the round's median "
            f"distance, e.g. 3); got {screen}."
        )
    if not 0 <= config.assumed_malicious < 0.5:
        raise ConfigError(
            f"assumed_malicious must lie in [0, 0.5); got {config.assumed_malicious}."
        )


# protofl.algorithms.robust_prototypes.PROTOTYPE_RULES (a test holds them equal)
PROTOTYPE_RULES = ("all", "median", "centre-filter")

# every attack protofl.engine.attacks carries out (it imports this list)
ATTACK_NAMES = (
    "label-flip",
    "label-flip-pair",
    "sign-flip",
    "noise",
    "alie",
    "min-max",
    "min-sum",
    "backdoor",
    "prototype-poison",
)
# min-max / min-sum perturbation directions (protofl.engine.round_attacks)
PERTURBATIONS = ["std", "unit", "sign"]
# the attacks that have no attack_strength
NO_STRENGTH = (
    "label-flip",
    "label-flip-pair",
    "min-max",
    "min-sum",
    "backdoor",
    "prototype-poison",
)


def check_attack(config: RunConfig) -> None:
    """The attack, who carries it out, and its options."""
    if config.attack and config.attack not in ATTACK_NAMES:
        raise ConfigError(unknown_name_message("attack", config.attack, list(ATTACK_NAMES)))
    if not (math.isfinite(config.malicious_fraction) and 0 <= config.malicious_fraction < 1):
        raise ConfigError(
            f"malicious_fraction must lie in [0, 1); got {config.malicious_fraction}."
        )
    strength = config.attack_strength
    if strength is not None and not (math.isfinite(strength) and strength > 0):
        raise ConfigError(f"attack_strength must be > 0 (or unset: the default); got {strength}.")
    if strength is not None and config.attack in NO_STRENGTH:
        raise ConfigError(
            f"attack={config.attack!r} takes no attack_strength (min-max and min-sum search "
            "their own scale; label-flip and prototype-poison swap labels; backdoor has "
            "backdoor_fraction); unset it, or see docs/attacks.md."
        )
    check_backdoor(config)
    if config.attack_perturbation not in PERTURBATIONS:
        raise ConfigError(
            unknown_name_message("attack_perturbation", config.attack_perturbation, PERTURBATIONS)
        )
    if config.attack_perturbation != "std" and config.attack not in ("min-max", "min-sum"):
        raise ConfigError(
            f"attack_perturbation is an option of attack='min-max' and 'min-sum'; got "
            f"attack={config.attack!r}."
        )
    someone = config.malicious_fraction > 0 or bool(config.malicious_clients)
    if config.attack and not someone:
        raise ConfigError(
            f"attack={config.attack!r} needs malicious_fraction > 0 or malicious_clients."
        )
    if someone and not config.attack:
        raise ConfigError(
            f"malicious clients are set but no attack; choose one of {', '.join(ATTACK_NAMES)}."
        )


def check_backdoor(config: RunConfig) -> None:
    """The backdoor's options; the target's upper bound is checked once the data is known."""
    if not (math.isfinite(config.backdoor_fraction) and 0 < config.backdoor_fraction <= 1):
        raise ConfigError(
            f"backdoor_fraction must lie in (0, 1] (each liar's share of poisoned samples); "
            f"got {config.backdoor_fraction}."
        )
    if config.backdoor_target < 0:
        raise ConfigError(f"backdoor_target must be a class >= 0; got {config.backdoor_target}.")
    defaults = (BACKDOOR_TARGET, BACKDOOR_FRACTION)
    changed = (config.backdoor_target, config.backdoor_fraction) != defaults
    if changed and config.attack != "backdoor":
        raise ConfigError(
            "backdoor_target and backdoor_fraction are options of attack='backdoor'; got "
            f"attack={config.attack!r}."
        )
