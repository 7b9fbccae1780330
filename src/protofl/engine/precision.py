"""Numeric precision of training and evaluation: plain fp32, the fast bf16 path, or fp64.

``bf16`` runs the model's forward pass under ``torch.autocast`` in bfloat16 with weights,
gradients, optimiser state and payloads in fp32, and on CPU stores activations
channels-last, which oneDNN's bf16 kernels want. Loss terms -- cross-entropy and the
prototype losses, whose cosine logits divided by a temperature of 0.02 would lose about two
digits in bf16 -- are computed in fp32 on fp32 copies of the features. ``auto`` picks bf16
where the hardware does it natively (AVX512-BF16/AMX CPUs, CUDA GPUs with bf16) and fp32
elsewhere; the accuracy cost was measured on Office-Caltech (docs/speed.md).

``fp64`` keeps the model, the features, the losses, the prototypes and the payloads in
float64 (inputs are made in float32 and cast up, exactly). It is slow and exists for reference
runs: kernels of different CPUs sum in different orders, and a tiny federation with a
temperature of 0.02 amplifies fp32's last-bit differences into other accuracies within three
rounds; in float64 those differences start about nine digits smaller, so the recorded golden
runs hold on every CPU (see tests/golden_runs.py).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from protofl.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp64")


@dataclass(frozen=True)
class Precision:
    """A resolved precision for one device."""

    name: str  # "fp32", "bf16" or "fp64"
    device_type: str  # "cpu" or "cuda"

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of weights, features, loss terms and prototypes."""
        return torch.float64 if self.name == "fp64" else torch.float32

    @property
    def channels_last(self) -> bool:
        return self.name == "bf16"

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.name != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=torch.bfloat16)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Store conv weights channels-last for the bf16 path (same values, other strides);
        cast floating weights and buffers to float64 for fp64. Idempotent."""
        if self.name == "fp64":
            model.to(torch.float64)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return model

    def prepare_input(self, batch: torch.Tensor) -> torch.Tensor:
        if self.name == "fp64" and batch.is_floating_point():
            batch = batch.to(torch.float64)
        if self.channels_last and batch.ndim == 4:
            return batch.contiguous(memory_format=torch.channels_last)
        return batch


FP32 = Precision("fp32", "cpu")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (not by slow emulation)."""
    if device.type == "cuda":
        # Compute capability 8.0 (Ampere) and later have bf16 tensor cores; below that
        # (T4, V100, P100) torch emulates bf16 GEMMs and cuDNN has no bf16 convolutions, so
        # bf16 there is slower than fp32 and costs accuracy. is_bf16_supported() says True on
        # those by default (including_emulation=True) and reads the current device, not
        # this one; ask about this device's capability instead.
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and _cpu_has_bf16())
    return False


def _cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # older or unusual builds
        return False


def resolve_precision(name: str, device: torch.device) -> Precision:
    """Turn the ``precision`` setting into what runs on ``device``."""
    if name not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {name!r}.")
    if name == "auto":
        name = "bf16" if native_bf16(device) else "fp32"
    if name == "bf16" and device.type not in ("cpu", "cuda"):
        raise ConfigError(f"precision bf16 is supported on cpu and cuda, not {device.type}.")
    if name == "fp64" and device.type == "mps":
        raise ConfigError("precision fp64 is not supported on mps (it has no float64); use fp32.")
    return Precision(name, device.type)
