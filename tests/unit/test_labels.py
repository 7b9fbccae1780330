"""The label gate: every accepted form, every rejected form, and the messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from protofl.data import as_class_indices
from protofl.errors import LabelError, LabelTypeError, ProtoflError

EXPECTED = torch.tensor([2, 0, 1, 2])


@pytest.mark.parametrize(
    "labels",
    [
        [2, 0, 1, 2],
        np.array([2, 0, 1, 2], dtype=np.int8),
        np.array([2, 0, 1, 2], dtype=np.uint8),
        np.array([2, 0, 1, 2], dtype=np.int16),
        np.array([2, 0, 1, 2], dtype=np.int32),
        np.array([2, 0, 1, 2], dtype=np.uint64),
        np.array([2.0, 0.0, 1.0, 2.0], dtype=np.float32),
        np.array([2.0, 0.0, 1.0, 2.0]),
        torch.tensor([2, 0, 1, 2], dtype=torch.int32),
        torch.tensor([2.0, 0.0, 1.0, 2.0], dtype=torch.bfloat16),
        np.array([[2], [0], [1], [2]]),  # (N, 1) column
        torch.tensor([[2], [0], [1], [2]]),
        np.eye(3)[[2, 0, 1, 2]],  # one-hot float
        np.eye(3, dtype=np.int64)[[2, 0, 1, 2]],  # one-hot int
        np.eye(3, dtype=bool)[[2, 0, 1, 2]],  # one-hot bool
        [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]],  # one-hot nested list
    ],
)
def test_accepted_forms_give_int64_ids(labels: object) -> None:
    result = as_class_indices(labels, num_classes=3)
    assert result.dtype == torch.int64
    assert result.ndim == 1
    assert torch.equal(result, EXPECTED)


def test_result_does_not_share_memory_with_input() -> None:
    source = np.array([1, 2, 3], dtype=np.int64)
    result = as_class_indices(source)
    source[0] = 9
    assert result[0].item() == 1


def test_num_classes_optional() -> None:
    assert torch.equal(as_class_indices([7, 3]), torch.tensor([7, 3]))


@pytest.mark.parametrize(
    ("labels", "num_classes", "error", "fragments"),
    [
        ([0.5, 1.0], None, LabelError, ["non-integral", "0.5 at index 0", "Fix:"]),
        ([1, -2, 3], None, LabelError, ["negative", "-2 at index 1", "Fix:"]),
        ([1, 10, 3], 10, LabelError, ["[0, 10)", "10 at index 1", "Fix:"]),
        ([[1, 1, 0], [0, 1, 0]], None, LabelError, ["multi-hot", "row 0: [1, 1, 0]"]),
        ([[0.2, 0.8], [1.0, 0.0]], None, LabelError, ["soft labels", "row 0: [0.2, 0.8]"]),
        ([[0, 0, 0], [0, 1, 0]], None, LabelError, ["rows with no 1", "row 0"]),
        ([1.0, float("nan"), 2.0], None, LabelError, ["NaN or infinite", "nan at index 1"]),
        ([1.0, float("inf")], None, LabelError, ["NaN or infinite", "inf at index 1"]),
        (["cat", "dog"], None, LabelTypeError, ["'cat'", "np.unique"]),
        ("cat", None, LabelTypeError, ["single string"]),
        ([], None, LabelError, ["empty", "shape (0,)"]),
        (np.zeros((2, 2, 2)), None, LabelError, ["3-D", "(2, 2, 2)"]),
        (np.int64(3), None, LabelError, ["scalar"]),
        (np.array([True, False]), None, LabelTypeError, ["mask", "astype"]),
        (np.array([1 + 1j]), None, LabelTypeError, ["complex128"]),
        ({1, 2}, None, LabelTypeError, ["set", "no sample order"]),
        ([[1, 0], [0, 1, 0]], None, LabelError, ["different lengths"]),
        (np.eye(4)[[0, 1]], 3, LabelError, ["num_classes=3 columns", "(2, 4)"]),
        ([[3, 1, 2]], None, LabelError, ["not one-hot", "y.ravel()"]),
        ([1e30, 1.0], None, LabelError, ["int64"]),
    ],
)
def test_rejected_forms_explain_themselves(
    labels: object, num_classes: int | None, error: type[Exception], fragments: list[str]
) -> None:
    with pytest.raises(error) as caught:
        as_class_indices(labels, num_classes=num_classes, name="train_labels")
    message = str(caught.value)
    assert message.startswith("train_labels")
    for fragment in fragments:
        assert fragment in message, message
    assert isinstance(caught.value, ProtoflError)


def test_many_offenders_are_summarised() -> None:
    with pytest.raises(LabelError, match=r"and 15 more"):
        as_class_indices(np.full(20, 0.5))


def test_invalid_num_classes() -> None:
    with pytest.raises(LabelError, match="num_classes"):
        as_class_indices([1], num_classes=0)


def test_classic_float_label_failure_cannot_happen_here() -> None:
    """Another framework's sampler built labels with torch.Tensor(y), i.e. float32, and
    cross-entropy then refused them ("expected scalar type Long but found Float"; newer torch
    says "expected target dtype to be Long or Byte"). Reproduce that, then show our gate's
    output trains with integer and with one-hot input alike."""
    logits = torch.randn(4, 3, requires_grad=True)
    integer_labels = np.array([2, 0, 1, 2])
    cast_by_sampler = torch.Tensor(integer_labels.copy())
    assert cast_by_sampler.dtype == torch.float32
    with pytest.raises(RuntimeError, match=r"(?i)long"):
        F.cross_entropy(logits, cast_by_sampler)

    for labels in (integer_labels, np.eye(3)[integer_labels], integer_labels[:, None]):
        targets = as_class_indices(labels, num_classes=3)
        loss = F.cross_entropy(logits, targets)
        loss.backward()
        assert torch.isfinite(loss)
