"""The one local-training loop every algorithm runs; algorithms add loss terms via hooks."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from protofl.algorithms.hooks import ClientRound, LocalStep
from protofl.algorithms.prototypes import PrototypeAccumulator
from protofl.core.payloads import Prototypes
from protofl.engine.data import ClientData
from protofl.engine.precision import FP32, Precision
from protofl.errors import TrainingError
from protofl.models.base import feature_model


@dataclass(frozen=True)
class LocalSettings:
    """Local optimisation settings; the paper uses SGD 0.01 / 0.9 / 1e-5, batch 64.

    Checked where they enter, in :class:`~protofl.config.RunConfig`; trusted here.
    """

    epochs: int = 1
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-5


Forward = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def make_forward(model: nn.Module, compile_backend: str = "") -> Forward:
    """``x -> (features, logits)`` for ``model``, compiled with ``torch.compile`` when a
    backend is named (``"inductor"`` on a GPU). The compiled function stays tied to this
    model object, whose weights the loops load in place each round."""

    typed = feature_model(model)

    def forward(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = typed.features(inputs)
        return features, typed.head(features)

    if not compile_backend:
        return forward
    compiled: Forward = torch.compile(forward, backend=compile_backend)
    return compiled


@dataclass(frozen=True)
class LocalOutcome:
    """Per-step means of every loss term (and train accuracy), plus local prototypes."""

    metrics: dict[str, float]
    prototypes: Prototypes | None
    steps: int


def train_locally(
    model: nn.Module,
    data: ClientData,
    hooks: ClientRound,
    settings: LocalSettings,
    generator: torch.Generator,
    where: str = "",
    precision: Precision = FP32,
    forward: Forward | None = None,
) -> LocalOutcome:
    """Train ``model`` in place on ``data`` for ``settings.epochs`` epochs.

    A fresh SGD optimiser every call (the paper re-creates it each round). Loss =
    ``hooks.ce_weight * CE + sum(hooks.loss_terms(step))``. When ``hooks.collect_prototypes``
    is set, class-mean features are accumulated over the last epoch. Loss sums stay on the
    device and are checked once per epoch, so there is no host sync per step. Under a bf16
    ``precision`` only the forward pass is autocast; features and logits are cast back to
    fp32 (float64 under fp64) before any loss term or prototype sees them.
    """
    _check_trainable(model, data, where)
    forward = forward or make_forward(model)
    model.train()
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=settings.lr,
        momentum=settings.momentum,
        weight_decay=settings.weight_decay,
    )
    device = data.indices.device
    sums: dict[str, torch.Tensor] = {}
    accumulator = None
    steps = 0
    for epoch in range(settings.epochs):
        last_epoch = epoch == settings.epochs - 1
        order = data.indices[torch.randperm(len(data), generator=generator, device=device)]
        for batch_indices in _batches(order, settings.batch_size):
            inputs = data.transform.train(data.source.inputs[batch_indices], generator)
            inputs = precision.prepare_input(inputs)
            labels = data.source.labels[batch_indices]
            with precision.autocast():
                features, logits = forward(inputs)
            features, logits = features.to(precision.dtype), logits.to(precision.dtype)
            step = LocalStep(model, inputs, labels, features, logits, last_epoch)
            terms = {"ce": F.cross_entropy(logits, labels)}
            terms.update(hooks.loss_terms(step))
            loss = hooks.ce_weight * terms["ce"] + sum(
                (value for key, value in terms.items() if key != "ce"), logits.new_zeros(())
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            terms["loss"] = loss
            terms["accuracy"] = (logits.argmax(dim=1) == labels).float().mean()
            _accumulate(sums, terms)
            if last_epoch and hooks.collect_prototypes:
                if accumulator is None:
                    accumulator = PrototypeAccumulator(
                        logits.shape[1], features.shape[1], device, features.dtype
                    )
                accumulator.add(features, labels)
            steps += 1
        _check_finite(sums, where, epoch + 1)
    metrics = {key: float(value) / max(steps, 1) for key, value in sums.items()}
    prototypes = accumulator.prototypes() if accumulator is not None else None
    return LocalOutcome(metrics, prototypes, steps)


def _batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Split into batches; a last batch of one sample joins the one before it.

    A batch of one breaks BatchNorm in training mode ("Expected more than 1 value per
    channel"), and dropping the sample would silently lose data.
    """
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def _check_trainable(model: nn.Module, data: ClientData, where: str) -> None:
    has_batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if len(data) < 2 and has_batch_norm:
        raise TrainingError(
            f"{where or 'local training'}: client {data.client_id} holds {len(data)} sample(s), "
            "but a model with BatchNorm needs at least 2 per batch. Give every client at least "
            "2 samples (raise client_fraction or lower the client count) or use a model "
            "without BatchNorm."
        )


def _accumulate(sums: dict[str, torch.Tensor], terms: dict[str, torch.Tensor]) -> None:
    for key, value in terms.items():
        detached = value.detach().to(torch.promote_types(value.dtype, torch.float32))
        sums[key] = sums[key] + detached if key in sums else detached


def _check_finite(sums: dict[str, torch.Tensor], where: str, epoch: int) -> None:
    values = {key: float(value) for key, value in sums.items()}  # one sync per epoch
    bad = [key for key, value in values.items() if not math.isfinite(value)]
    if bad:
        raise TrainingError(
            f"{where or 'local training'}, local epoch {epoch}: loss term(s) "
            f"{', '.join(bad)} became NaN or inf. Try a smaller learning rate (a resumed run "
            "may change lr), or a larger temperature for contrastive terms."
        )
