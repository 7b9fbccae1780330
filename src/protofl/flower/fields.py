"""Reading the fields of a Flower record, each checked: weights against the model, metrics,
scalars, arrays (never pickled), with errors that name the field and the fix."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ConfigRecord, RecordDict

from protofl.core.payloads import StateDict
from protofl.errors import PayloadError

WEIGHTS, META, METRICS = "weights", "meta", "metrics"


@dataclass(frozen=True)
class Expected:
    """What a receiver accepts: the weights' layout, the classes and the feature size."""

    weights: Mapping[str, tuple[tuple[int, ...], torch.dtype]]
    num_classes: int
    feature_dim: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @staticmethod
    def like(
        weights: StateDict, num_classes: int, feature_dim: int, device: torch.device | None = None
    ) -> Expected:
        layout = {key: (tuple(value.shape), value.dtype) for key, value in weights.items()}
        first = next(iter(weights.values()), None)
        where = device or (first.device if first is not None else torch.device("cpu"))
        return Expected(layout, num_classes, feature_dim, where)

    @property
    def prototype_dtype(self) -> torch.dtype:
        """Prototypes travel in the dtype of the model's floating weights: float32, or
        float64 under the fp64 precision."""
        for _, dtype in self.weights.values():
            if dtype.is_floating_point:
                return dtype
        return torch.float32


def read_weights(content: RecordDict, expected: Expected, where: str) -> StateDict:
    record = content.array_records.get(WEIGHTS)
    if record is None:
        raise PayloadError(f"{where}: the {WEIGHTS!r} record is missing.")
    missing = sorted(set(expected.weights) - set(record))
    extra = sorted(set(record) - set(expected.weights))
    if missing or extra:
        raise PayloadError(
            f"{where}: weights do not match the model: missing {preview(missing)}, unexpected "
            f"{preview(extra)}. Fix: server and clients must build the same model."
        )
    weights = {}
    for key, (shape, dtype) in expected.weights.items():
        tensor = to_tensor(record[key], f"{where}: weights[{key!r}]")
        if tuple(tensor.shape) != shape or tensor.dtype != dtype:
            raise PayloadError(
                f"{where}: weights[{key!r}]: expected {dtype} {list(shape)}; got "
                f"{tensor.dtype} {list(tensor.shape)}."
            )
        check_finite(tensor, f"{where}: weights[{key!r}]")
        weights[key] = tensor.to(expected.device)
    return weights


def read_metrics(content: RecordDict, where: str) -> dict[str, float]:
    record = content.metric_records.get(METRICS)
    if record is None:
        return {}
    metrics = {}
    for key, raw in record.items():
        value: Any = raw
        if not is_number(value) or not math.isfinite(value):
            raise PayloadError(f"{where}: metrics[{key!r}] must be a finite number; got {value!r}.")
        metrics[key] = float(value)
    return metrics


def to_tensor(array: Any, where: str) -> torch.Tensor:
    if not isinstance(array, Array):
        raise PayloadError(f"{where}: expected a flwr Array; got {type(array).__name__}.")
    try:
        values = array.numpy()
    except Exception as err:  # np.load's errors on corrupt or pickled bytes vary by cause
        raise PayloadError(
            f"{where}: cannot read the array ({type(err).__name__}: {err})."
        ) from err
    if values.dtype.kind not in "biuf" or tuple(values.shape) != tuple(array.shape):
        raise PayloadError(
            f"{where}: expected a numeric array of the declared shape {tuple(array.shape)}; got "
            f"{values.dtype} {tuple(values.shape)}."
        )
    try:
        return torch.from_numpy(np.array(values, dtype=values.dtype.newbyteorder("="), copy=True))
    except TypeError as err:  # a numpy dtype torch has no type for
        raise PayloadError(f"{where}: unsupported dtype {values.dtype} ({err}).") from err


def check_finite(tensor: torch.Tensor, where: str) -> None:
    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
        bad = tensor[~torch.isfinite(tensor)].flatten()[:3].tolist()
        raise PayloadError(f"{where}: contains non-finite values, e.g. {bad}.")


def meta_record(content: RecordDict, where: str) -> ConfigRecord:
    meta = content.config_records.get(META)
    if meta is None:
        raise PayloadError(
            f"{where}: the {META!r} record is missing; is the sender a protofl app of the same "
            "version?"
        )
    return meta


def read_int(meta: ConfigRecord, key: str, where: str, minimum: int) -> int:
    value: Any = meta.get(key)
    if not is_int(value) or value < minimum:
        raise PayloadError(
            f"{where}: meta[{key!r}] must be an integer >= {minimum}; got {value!r}."
        )
    return int(value)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def preview(items: list[Any]) -> str:
    shown = ", ".join(repr(item) for item in items[:3])
    return f"[{shown}{', ...' if len(items) > 3 else ''}]"
