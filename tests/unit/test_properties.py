"""Property-based tests (hypothesis): the label gate and client partitions never misbehave,
whatever they are given: a correct answer or one of our clear errors, nothing else."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from protofl.data import as_class_indices
from protofl.data.partition import client_share, draw_clients
from protofl.errors import ConfigError, DataError, LabelError, LabelTypeError

INTEGER_DTYPES = st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16])


@st.composite
def classes_and_ids(draw: st.DrawFn, max_classes: int = 20) -> tuple[int, list[int]]:
    classes = draw(st.integers(2, max_classes))
    ids = draw(st.lists(st.integers(0, classes - 1), min_size=1, max_size=50))
    return classes, ids


@given(classes_and_ids(), INTEGER_DTYPES)
def test_integer_ids_come_back_unchanged(case: tuple[int, list[int]], dtype: type) -> None:
    classes, ids = case
    result = as_class_indices(np.array(ids, dtype=dtype), num_classes=classes)
    assert result.dtype == torch.int64 and result.tolist() == ids


@given(classes_and_ids(max_classes=12))
def test_one_hot_and_column_forms_agree_with_ids(case: tuple[int, list[int]]) -> None:
    classes, ids = case
    expected = torch.tensor(ids)
    assert torch.equal(as_class_indices(np.eye(classes)[ids], classes), expected)
    assert torch.equal(as_class_indices(np.array(ids)[:, None], classes), expected)
    assert torch.equal(as_class_indices(torch.tensor(ids, dtype=torch.float64), classes), expected)


@given(hnp.arrays(dtype=st.sampled_from([np.float64, np.float32, np.int64, np.int32, np.bool_]),
                  shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)),
       st.one_of(st.none(), st.integers(1, 10)))  # fmt: skip
def test_any_numeric_array_gives_ids_or_a_clear_error(
    array: np.ndarray, classes: int | None
) -> None:
    try:
        result = as_class_indices(array, num_classes=classes, name="labels")
    except (LabelError, LabelTypeError) as err:
        assert str(err).startswith(("labels", "num_classes"))
        return
    assert result.dtype == torch.int64 and result.ndim == 1
    assert int(result.min()) >= 0
    if classes is not None:
        assert int(result.max()) < classes


@settings(deadline=None)
@given(
    st.lists(st.integers(0, 9), min_size=1, max_size=300),
    st.integers(0, 6),
    st.floats(0.01, 1.0),
    st.booleans(),
    st.integers(0, 2**31),
)
def test_partitions_are_disjoint_sized_and_complete_or_refused(
    labels: list[int], clients: int, fraction: float, all_classes: bool, seed: int
) -> None:
    data = {"d": torch.tensor(labels)}
    try:
        plans = draw_clients(data, {"d": clients}, fraction, seed, 10, all_classes)
    except (ConfigError, DataError) as err:
        assert str(err)  # a message, not an empty error
        return
    share = client_share(len(labels), fraction)
    combined = np.concatenate([p.indices for p in plans])
    assert len(plans) == clients
    assert all(len(p.indices) == share for p in plans)
    assert len(np.unique(combined)) == len(combined)
    assert combined.min() >= 0 and combined.max() < len(labels)
    if all_classes:
        for plan in plans:
            assert set(np.array(labels)[plan.indices].tolist()) == set(range(10))
