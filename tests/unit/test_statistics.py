"""protofl.core.stats against values worked out by hand (and, where noted, by other tools)."""

from __future__ import annotations

import math

import pytest

from protofl.core.stats import (
    domain_std,
    paired_comparison,
    paired_t_power,
    pooled_accuracy,
    seeds_for_power,
    worst_domain,
)

# FPL + FedHEAL minus FPL at the paper protocol, seeds 0-2, last 5 rounds (issue 19)
FEDHEAL_GAINS = [3.71, 0.48, 5.44]


def test_spread_worst_and_pooled_over_domains() -> None:
    per_domain = {"caltech": 0.6, "amazon": 0.8, "webcam": 0.5, "dslr": 0.5}
    # mean 0.6; squared deviations 0, 0.04, 0.01, 0.01 -> 0.06 / 3 = 0.02
    assert domain_std(per_domain) == pytest.approx(math.sqrt(0.02))
    assert domain_std({"only": 0.7}) == 0.0
    assert worst_domain(per_domain) == ("webcam", 0.5)  # the first of the tied two
    sizes = {"caltech": 224, "amazon": 190, "webcam": 58, "dslr": 30}  # Office-Caltech, 502
    # correct: 134.4 + 152 + 29 + 15 = 330.4 of 502
    assert pooled_accuracy(per_domain, sizes) == pytest.approx(330.4 / 502)


def test_paired_comparison_of_fedheal_gains() -> None:
    result = paired_comparison(FEDHEAL_GAINS)
    assert result.n == 3
    assert result.mean == pytest.approx(3.21)  # 9.63 / 3
    # deviations 0.50, -2.73, 2.23: squares sum to 12.6758; / 2 = 6.3379
    assert result.std == pytest.approx(math.sqrt(6.3379))  # 2.5175
    error = math.sqrt(6.3379 / 3)  # 1.45349; t = 3.21 / 1.45349 = 2.2085
    t = 3.21 / error
    # two degrees of freedom have closed forms: two-sided p = 1 - t / sqrt(2 + t^2) = 0.1579
    # (scipy.stats.ttest_1samp agrees), and the 97.5 % quantile is 0.95 * sqrt(2 / 0.0975)
    # = 4.3027, so the interval is 3.21 -+ 6.254 = [-3.04, 9.46]
    assert result.ci_low is not None and result.ci_high is not None
    assert result.p_value == pytest.approx(1 - t / math.sqrt(2 + t * t))
    assert result.p_value == pytest.approx(0.158, abs=5e-4)
    quantile = 0.95 * math.sqrt(2 / (1 - 0.95**2))
    assert result.ci_low == pytest.approx(3.21 - quantile * error)
    assert result.ci_high == pytest.approx(3.21 + quantile * error)
    assert (round(result.ci_low, 2), round(result.ci_high, 2)) == (-3.04, 9.46)
    assert not result.separated
    # effect 3.21 / 2.5175 = 1.275 sd: power 0.706 with 6 pairs, 0.801 with 7 (a Monte
    # Carlo of 200 000 paired t-tests gave 0.708 and 0.802); a normal approximation
    # ((1.960 + 0.842) / 1.275)^2 = 4.83 would say 5 and be short
    assert result.seeds_for_power == 7


def test_separated_when_every_seed_agrees_by_far() -> None:
    result = paired_comparison([2.0, 2.5, 3.0])  # mean 2.5, std 0.5, error 0.2887
    assert result.separated
    assert result.ci_low == pytest.approx(2.5 - 4.302653 * 0.5 / math.sqrt(3))
    assert result.seeds_for_power == 3  # effect 5 sd


def test_power_matches_the_textbook_sample_sizes() -> None:
    # the paired t-test table (Cohen 1988; G*Power, two-sided alpha 0.05, power 0.8):
    # d = 1 -> 10 pairs, d = 0.5 -> 34, d = 0.2 -> 199
    assert seeds_for_power(1.0, 1.0) == 10
    assert seeds_for_power(-0.5, 1.0) == 34  # the sign does not matter
    assert seeds_for_power(0.2, 1.0) == 199
    assert paired_t_power(1.0, 10) >= 0.8 > paired_t_power(1.0, 9)
    assert seeds_for_power(1e-4, 1.0) is None  # more than protofl will ever run
    assert seeds_for_power(0.0, 1.0) is None  # nothing to detect


def test_degenerate_inputs() -> None:
    single = paired_comparison([1.5])
    assert (single.mean, single.std, single.p_value, single.seeds_for_power) == (
        1.5,
        None,
        None,
        None,
    )
    assert not single.separated
    same = paired_comparison([1.0, 1.0, 1.0])
    assert (same.ci_low, same.ci_high, same.p_value, same.separated) == (1.0, 1.0, 0.0, True)
    zero = paired_comparison([0.0, 0.0])
    assert (zero.p_value, zero.separated, zero.seeds_for_power) == (1.0, False, None)
    with pytest.raises(ValueError, match="at least one difference"):
        paired_comparison([])
    with pytest.raises(ValueError, match="at least 2 pairs"):
        paired_t_power(1.0, 1)


def test_the_backdoor_success_rate_is_averaged_like_accuracy() -> None:
    from protofl.outputs.report_stats import attack_columns, attack_lines

    def history(rates: list[float | None]) -> list[dict[str, object]]:
        return [{"round": i + 1, "attack_success_rate": r} for i, r in enumerate(rates)]

    # seed 0: last two rounds 0.2 and 0.4 -> 30 %; seed 1: 0.5 and 0.7 -> 60 %
    histories = {0: history([0.9, 0.2, 0.4]), 1: history([0.0, 0.5, 0.7])}
    columns = attack_columns(histories, last=2)
    assert abs(columns["attack_success_rate"]["mean"] - 45.0) < 1e-9
    assert abs(columns["attack_success_rate"]["std"] - 21.2132034) < 1e-6
    assert attack_columns({0: history([None, None])}, last=2) == {}  # no backdoor: no column
    lines = attack_lines({"rows": {"fpl": columns, "fedavg": {}}}, "last 2 rounds")
    assert lines[-1] == "| fpl | 45.00 ± 21.21 |"
    assert not any("fedavg" in line for line in lines)
