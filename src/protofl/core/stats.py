"""Statistics of accuracies: spread across domains, pooled accuracy, and paired comparisons
of two methods over seeds (interval, t-test, seeds needed for power).

Pure functions on plain numbers; no I/O. Accuracies may be fractions or percentages, as long
as one call uses one scale.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from protofl.errors import ConfigError

CONFIDENCE = 0.95
POWER = 0.8
ALPHA = 0.05
MAX_SEEDS = 100_000  # beyond this a difference is "not detectable" in practice


def domain_std(per_domain: Mapping[str, float]) -> float:
    """Sample std (n - 1) of the per-domain accuracies, as FedHEAL reports its STD; 0.0 for
    a single domain, which has no spread."""
    values = list(per_domain.values())
    return statistics.stdev(values) if len(values) > 1 else 0.0


def worst_domain(per_domain: Mapping[str, float]) -> tuple[str, float]:
    """The domain with the lowest accuracy and that accuracy (the first one on a tie)."""
    name = min(per_domain, key=lambda domain: per_domain[domain])
    return name, per_domain[name]


def pooled_accuracy(per_domain: Mapping[str, float], test_sizes: Mapping[str, int]) -> float:
    """Accuracy over all test samples: correct over total. Each domain's accuracy is its
    correct count over its test size, so weighting by the sizes gives the pooled figure."""
    total = sum(test_sizes[domain] for domain in per_domain)
    return sum(per_domain[d] * test_sizes[d] for d in per_domain) / total


@dataclass(frozen=True)
class PairedComparison:
    """A method minus a baseline, seed by seed. With fewer than two pairs there is no
    spread, so the interval, p-value and seeds needed are ``None``."""

    n: int
    mean: float
    std: float | None  # sample std of the differences
    ci_low: float | None
    ci_high: float | None
    p_value: float | None  # paired (one-sample) t-test, two-sided
    separated: bool  # the interval excludes 0
    seeds_for_power: int | None  # None: one pair, no difference, or above MAX_SEEDS


def paired_comparison(
    differences: Sequence[float], confidence: float = CONFIDENCE
) -> PairedComparison:
    """Mean of the per-seed differences, its t interval and the paired t-test p-value."""
    n = len(differences)
    if n == 0:
        raise ConfigError("paired_comparison needs at least one difference; got none.")
    mean = statistics.fmean(differences)
    if n < 2:
        return PairedComparison(n, mean, None, None, None, None, False, None)
    # scipy.stats takes a second or two to import, and every round imports this module
    from scipy import stats as scipy_stats

    std = statistics.stdev(differences)
    if std == 0.0:  # identical differences: the t statistic is infinite (or 0/0)
        p_value = 1.0 if mean == 0.0 else 0.0
        seeds = None if mean == 0.0 else 2
        return PairedComparison(n, mean, 0.0, mean, mean, p_value, mean != 0.0, seeds)
    error = std / math.sqrt(n)
    margin = float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)) * error
    p_value = 2 * float(scipy_stats.t.sf(abs(mean) / error, n - 1))
    low, high = mean - margin, mean + margin
    separated = low > 0 or high < 0
    return PairedComparison(n, mean, std, low, high, p_value, separated, seeds_for_power(mean, std))


def paired_t_power(effect: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test with ``n`` pairs when the true mean difference
    is ``effect`` standard deviations of the differences: the noncentral t distribution
    with n - 1 degrees of freedom and noncentrality ``effect * sqrt(n)``, beyond either
    critical value."""
    if n < 2:
        raise ConfigError(f"a paired t-test needs at least 2 pairs; got n={n}.")
    from scipy import stats as scipy_stats

    df, noncentrality = n - 1, abs(effect) * math.sqrt(n)
    critical = float(scipy_stats.t.ppf(1 - alpha / 2, df))
    upper = float(scipy_stats.nct.sf(critical, df, noncentrality))
    lower = float(scipy_stats.nct.cdf(-critical, df, noncentrality))
    return upper + lower


def seeds_for_power(
    mean: float, std: float, power: float = POWER, alpha: float = ALPHA
) -> int | None:
    """Fewest seeds (pairs, at least 2) for which a two-sided paired t-test at ``alpha`` has
    ``power`` when the true difference is ``mean`` and the differences' std is ``std``.

    Exact: power from the noncentral t distribution (:func:`paired_t_power`), not a normal
    approximation; power rises with n, so a doubling then a bisection finds the smallest n.
    ``None`` when there is no difference to detect or more than ``MAX_SEEDS`` are needed.
    """
    if mean == 0.0:
        return None
    if std == 0.0:
        return 2
    effect = abs(mean) / std
    high = 2
    while paired_t_power(effect, high, alpha) < power:
        if high >= MAX_SEEDS:
            return None
        high = min(2 * high, MAX_SEEDS)
    low = max(2, high // 2)
    if paired_t_power(effect, low, alpha) >= power:
        return low
    while high - low > 1:  # power(low) < target <= power(high)
        middle = (low + high) // 2
        if paired_t_power(effect, middle, alpha) >= power:
            high = middle
        else:
            low = middle
    return high
