"""The one gate labels pass through: anything a user hands us becomes int64 class ids here.

Accepted: integer ids of any integer dtype, integral-valued floats, an (N, 1) column and
one-hot matrices (N, C). Everything else is refused with a message that names the input,
says what was expected, shows what arrived and how to fix it. Nothing downstream casts
labels again, so the float-label crash of other frameworks ("expected scalar type Long but
found Float") cannot happen.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from protofl.errors import LabelError, LabelTypeError

_EXPECTED = "class ids as a 1-D integer array (N,), an (N, 1) column, or a one-hot matrix (N, C)"
_MAX_SHOWN = 5
_INT64_MAX = np.iinfo(np.int64).max


def as_class_indices(y: Any, num_classes: int | None = None, name: str = "y") -> torch.Tensor:
    """Return ``y`` as a new 1-D ``torch.int64`` tensor of class ids, or raise a clear error.

    ``y`` may be a numpy array, a torch tensor or a (nested) Python list. With
    ``num_classes`` set, ids must lie in ``[0, num_classes)`` and one-hot matrices must have
    exactly ``num_classes`` columns.
    """
    if num_classes is not None and (isinstance(num_classes, bool) or num_classes < 1):
        raise LabelError(f"num_classes must be a positive integer; got {num_classes!r}.")
    array = _to_numpy(y, name)
    _check_dtype(array, name)
    if array.size == 0:
        raise LabelError(
            f"{name}: expected {_EXPECTED} with at least one label; got an empty "
            f"{_describe(array)}. Fix: check that the dataset or split is not empty."
        )
    if array.ndim == 0:
        raise LabelError(
            f"{name}: expected {_EXPECTED}; got a scalar {_describe(array)} ({array.item()!r}). "
            f"Fix: pass one label per sample, e.g. [{array.item()!r}] for a single sample."
        )
    if array.ndim > 2:
        raise LabelError(
            f"{name}: expected {_EXPECTED}; got a {array.ndim}-D {_describe(array)}. "
            "Fix: pass one label per sample (1-D) or one row per sample (one-hot, 2-D)."
        )
    _check_finite(array, name)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    one_hot = array.ndim == 2
    ids = _from_one_hot(array, num_classes, name) if one_hot else _from_ids(array, name)
    _check_range(ids, num_classes, name)
    return torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64).copy())


def _to_numpy(y: Any, name: str) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        tensor = y.detach().cpu()
        if tensor.dtype in (torch.bfloat16, torch.float16):
            tensor = tensor.float()
        if tensor.is_complex():
            raise LabelTypeError(
                f"{name}: expected {_EXPECTED}; got a complex tensor ({tensor.dtype}). "
                "Fix: pass real integer class ids."
            )
        return tensor.numpy()
    if isinstance(y, (str, bytes)):
        raise LabelTypeError(
            f"{name}: expected {_EXPECTED}; got a single string {y!r}. "
            "Fix: pass a sequence of integer class ids."
        )
    if isinstance(y, (dict, set, frozenset)):
        raise LabelTypeError(
            f"{name}: expected {_EXPECTED}; got a {type(y).__name__}, which has no sample order. "
            "Fix: pass a list, numpy array or torch tensor."
        )
    try:
        return np.asarray(y)
    except ValueError as err:  # ragged nested lists
        raise LabelError(
            f"{name}: expected {_EXPECTED}; got a {type(y).__name__} whose rows have different "
            f"lengths ({err}). Fix: give every one-hot row the same number of columns."
        ) from err


def _check_dtype(array: np.ndarray, name: str) -> None:
    kind = array.dtype.kind
    if kind in "iuf":
        return
    if kind == "b" and array.ndim == 2 and array.shape[1] > 1:
        return  # a boolean one-hot matrix is unambiguous
    if kind == "b":
        raise LabelTypeError(
            f"{name}: expected {_EXPECTED}; got {_describe(array)}, which looks like a mask rather "
            "than labels. Fix: if these are binary class ids, pass "
            "y.astype(np.int64)."
        )
    if kind in "USO":
        sample = ", ".join(repr(v) for v in array.ravel()[:_MAX_SHOWN].tolist())
        raise LabelTypeError(
            f"{name}: expected {_EXPECTED}; got {_describe(array)} with values such as {sample}. "
            "Fix: map class names to integer ids first, e.g. "
            "classes, ids = np.unique(y, return_inverse=True)."
        )
    raise LabelTypeError(
        f"{name}: expected {_EXPECTED}; got {_describe(array)}. Fix: pass real integer class ids."
    )


def _check_finite(array: np.ndarray, name: str) -> None:
    if array.dtype.kind != "f":
        return
    bad = ~np.isfinite(array)
    if bad.any():
        raise LabelError(
            f"{name}: expected {_EXPECTED}; got {_describe(array)} containing NaN or infinite "
            f"values: {_show(array, bad)}. Fix: drop or repair those samples before training."
        )


def _from_ids(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype.kind == "f":
        fractional = array != np.round(array)
        if fractional.any():
            raise LabelError(
                f"{name}: expected {_EXPECTED}; got {_describe(array)} with non-integral values: "
                f"{_show(array, fractional)}. Fix: class ids must be whole numbers; if these are "
                "scores or probabilities, convert them to ids first (e.g. argmax)."
            )
    negative = array < 0
    if negative.any():
        raise LabelError(
            f"{name}: expected class ids >= 0; got {_describe(array)} with negative values: "
            f"{_show(array, negative)}. Fix: remap labels to 0..C-1, e.g. "
            "np.unique(y, return_inverse=True)[1]."
        )
    too_big = array > _INT64_MAX
    if too_big.any():
        raise LabelError(
            f"{name}: class ids do not fit in int64: {_show(array, too_big)}. "
            "Fix: remap labels to 0..C-1, e.g. np.unique(y, return_inverse=True)[1]."
        )
    return array.astype(np.int64)


def _from_one_hot(array: np.ndarray, num_classes: int | None, name: str) -> np.ndarray:
    columns = array.shape[1]
    if num_classes is not None and columns != num_classes:
        raise LabelError(
            f"{name}: a one-hot matrix must have num_classes={num_classes} columns; got "
            f"{_describe(array)}. Fix: encode labels with {num_classes} columns, or pass class "
            "ids (N,) instead."
        )
    values = array.astype(np.float64)
    not_binary = (values != 0) & (values != 1)
    row_sums = values.sum(axis=1)
    if not_binary.any() or (row_sums != 1).any():
        bad_rows = np.flatnonzero(not_binary.any(axis=1) | (row_sums != 1))
        shown = "; ".join(
            f"row {r}: {_format_row(array[r])}" for r in bad_rows[:_MAX_SHOWN].tolist()
        )
        kind = _one_hot_problem(values, not_binary, row_sums)
        raise LabelError(
            f"{name}: expected {_EXPECTED}; got {_describe(array)} that is not one-hot "
            f"({kind}): {shown}{_more(len(bad_rows))}. Fix: each row needs exactly one 1 and "
            "zeros elsewhere; for soft or multi-label targets pick one class per sample "
            "(e.g. y.argmax(axis=1)). If the matrix is a single row of ids, pass y.ravel()."
        )
    return np.argmax(values, axis=1).astype(np.int64)


def _one_hot_problem(values: np.ndarray, not_binary: np.ndarray, row_sums: np.ndarray) -> str:
    if not_binary.any():
        in_unit = (values >= 0) & (values <= 1)
        if in_unit.all():
            return "soft labels: values between 0 and 1"
        return "values other than 0 and 1"
    if (row_sums > 1).any():
        return "multi-hot rows with more than one 1"
    return "rows with no 1"


def _check_range(ids: np.ndarray, num_classes: int | None, name: str) -> None:
    if num_classes is None:
        return
    too_big = ids >= num_classes
    if too_big.any():
        raise LabelError(
            f"{name}: expected class ids in [0, {num_classes}); got ids up to {int(ids.max())}: "
            f"{_show(ids, too_big)}. Fix: remap labels to 0..{num_classes - 1}, or set "
            "num_classes to the real number of classes."
        )


def _describe(array: np.ndarray) -> str:
    return f"{array.dtype} array of shape {tuple(array.shape)}"


def _show(array: np.ndarray, mask: np.ndarray) -> str:
    positions = np.argwhere(mask)
    parts = []
    for position in positions[:_MAX_SHOWN]:
        index = tuple(int(i) for i in position)
        where = str(index[0]) if len(index) == 1 else str(index)
        parts.append(f"{array[index].item()!r} at index {where}")
    return ", ".join(parts) + _more(len(positions))


def _format_row(row: np.ndarray) -> str:
    values = [v.item() for v in row[:8]]
    suffix = ", ..." if row.shape[0] > 8 else ""
    return (
        "[" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values) + suffix + "]"
    )


def _more(count: int) -> str:
    return f" (and {count - _MAX_SHOWN} more)" if count > _MAX_SHOWN else ""
