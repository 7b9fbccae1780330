"""FedAvg averaging and its BatchNorm buffer policy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from protofl.errors import PayloadError
from protofl.federation.aggregation import sample_weights, weighted_average


def bn_state(mean: float, var: float, batches: int, weight: float) -> dict[str, torch.Tensor]:
    layer = nn.BatchNorm1d(2)
    layer.get_buffer("running_mean").fill_(mean)
    layer.get_buffer("running_var").fill_(var)
    layer.get_buffer("num_batches_tracked").fill_(batches)
    layer.weight.data.fill_(weight)
    return {k: v.clone() for k, v in layer.state_dict().items()}


def test_sample_weights() -> None:
    assert sample_weights([1, 3]) == [0.25, 0.75]
    with pytest.raises(PayloadError, match="positive total"):
        sample_weights([0, 0])


def test_parameters_and_running_stats_are_weighted_averages() -> None:
    states = [bn_state(1.0, 2.0, 10, 0.0), bn_state(5.0, 6.0, 20, 4.0)]
    result = weighted_average(states, [0.25, 0.75])
    torch.testing.assert_close(result["running_mean"], torch.full((2,), 4.0))
    torch.testing.assert_close(result["running_var"], torch.full((2,), 5.0))
    torch.testing.assert_close(result["weight"], torch.full((2,), 3.0))


def test_integer_counters_stay_integers() -> None:
    states = [bn_state(0, 1, 1, 1), bn_state(0, 1, 2, 1), bn_state(0, 1, 2, 1)]
    result = weighted_average(states, [0.5, 0.25, 0.25])
    counter = result["num_batches_tracked"]
    assert counter.dtype == torch.int64
    assert counter.item() == 2  # 1.5 rounds to 2 (round half to even), still an integer
    layer = nn.BatchNorm1d(2)
    layer.load_state_dict(result)
    assert layer.get_buffer("num_batches_tracked").dtype == torch.int64


def test_mismatched_states_are_refused() -> None:
    first = {"w": torch.zeros(2)}
    with pytest.raises(PayloadError, match="missing"):
        weighted_average([first, {"v": torch.zeros(2)}], [0.5, 0.5])
    with pytest.raises(PayloadError, match="shapes/dtypes differ"):
        weighted_average([first, {"w": torch.zeros(3)}], [0.5, 0.5])
    with pytest.raises(PayloadError, match="one weight per state"):
        weighted_average([first], [0.5, 0.5])


def test_matches_plain_loop_on_a_model() -> None:
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)) for _ in range(3)]
    weights = [0.2, 0.3, 0.5]
    states = [m.state_dict() for m in models]
    result = weighted_average(states, weights)
    for key, value in result.items():
        if value.is_floating_point():
            expected = sum(w * s[key] for w, s in zip(weights, states, strict=True))
            torch.testing.assert_close(value, expected)


def test_running_average_folds_like_the_plain_formula() -> None:
    from protofl.federation.aggregation import RunningAverage

    generator = torch.Generator().manual_seed(0)
    states = [
        {"w": torch.randn(3, 2, generator=generator), "n": torch.tensor(k, dtype=torch.int64)}
        for k in (1, 2, 4)
    ]
    counts = [10, 30, 60]
    average = RunningAverage()
    for state, count in zip(states, counts, strict=True):
        average.add(state, count)
    result = average.result()
    expected = sum(c * s["w"] for c, s in zip(counts, states, strict=True)) / 100
    torch.testing.assert_close(result["w"], expected)
    assert result["n"].dtype == torch.int64 and result["n"].item() == 3  # 3.1 rounds to 3
    assert average.count == 3
    with pytest.raises(PayloadError, match="nothing to average"):
        RunningAverage().result()
