"""FedPLVM's maths as pure functions: dual-level prototype clustering and the alpha-sparsity loss.

Wang, Bian, Zhang, Chen, Xu, "Taming Cross-Domain Representation Variance in Federated
Prototype Learning with Heterogeneous Data Domains", NeurIPS 2024 (arXiv 2403.09048);
reference code ``TriStonesWang/FedPLVM`` (``utils/update.py``, ``utils/util.py``, ``main.py``).

* Local level: per class, FINCH over the client's *sample features* (cosine, coarsest
  partition with at least two clusters); each cluster's plain mean is a local cluster
  prototype. Clients upload those, not one mean per class.
* Global level: per class, FINCH again over all clients' local cluster prototypes; each
  cluster's plain mean is a global cluster prototype, and the plain mean of a class's global
  cluster prototypes is its global (average) prototype.
* Client loss ``CE + lambda * (L_alpha + L_corr)`` (reference ``lamb`` 100): ``L_alpha`` is a
  multi-positive InfoNCE over ``cos(z, c)^alpha / tau`` to the global cluster prototypes and
  ``L_corr = 2 * mean_i (cos(z_i, p_{y_i}) - 1)^2`` pulls features to the global prototype.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from protofl.algorithms.losses import multi_positive_infonce
from protofl.algorithms.prototypes import class_means, cluster_prototypes
from protofl.core.payloads import Prototypes
from protofl.errors import ConfigError, PayloadError

DEFAULT_ALPHA = 0.25  # reference utils/options.py --alpha
DEFAULT_TEMPERATURE = 0.07  # reference --tau
DEFAULT_CORRECTION_SCALE = 2.0  # reference criterion_correction: 2 * MSELoss
# Below this cosine the power's gradient (alpha * c^(alpha-1)) is cut to 0 (see alpha_power).
_GRADIENT_FLOOR = 1e-6

NegativeCosine = Literal["clamp", "signed"]


def local_cluster_prototypes(
    features: torch.Tensor,  # [N, D] one client's sample features
    labels: torch.Tensor,  # [N] int64
    num_classes: int,
) -> Prototypes:
    """Per class, FINCH over the client's features; one prototype per cluster, its support
    the number of samples in it. Classes with one or two samples give one prototype."""
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise PayloadError(
            f"expected features [N, D] and labels [N]; got {tuple(features.shape)} and "
            f"{tuple(labels.shape)}."
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise PayloadError(
            f"labels must lie in [0, {num_classes}); got {labels.min().item()}.."
            f"{labels.max().item()}."
        )
    samples = Prototypes(
        features.detach().cpu(), labels.cpu(), torch.ones_like(labels, device="cpu")
    )
    return cluster_prototypes(samples)


def global_cluster_prototypes(
    client_clusters: Sequence[Prototypes], num_classes: int
) -> tuple[Prototypes, torch.Tensor, torch.Tensor]:  # clusters, [C, D] means, [C] bool
    """Server level: per class, FINCH over every client's local cluster prototypes.

    Returns the global cluster prototypes (support: number of local cluster prototypes
    merged), the per-class plain mean of those (the reference's ``global_avg_protos``) and
    which classes have one. Each local cluster prototype counts once, whatever its support.
    """
    clusters = cluster_prototypes(Prototypes.concat(list(client_clusters)).to("cpu"))
    means, has = class_means(clusters, num_classes)
    return clusters, means, has


def alpha_power(
    cosine: torch.Tensor, alpha: float, negative: NegativeCosine = "clamp"
) -> torch.Tensor:
    """``cos^alpha`` with a chosen meaning for negative cosines.

    The reference computes ``cos.pow(alpha)``, which is NaN for a negative cosine; its
    features are post-ReLU (non-negative), so cosines are never negative there. ``"clamp"``
    maps negative cosines to 0 (equal to the reference wherever the reference is finite);
    ``"signed"`` uses ``sign(c) |c|^alpha``, an odd, monotone extension. The value is exact;
    the gradient ``alpha c^(alpha - 1)`` is infinite at 0, so below ``1e-6`` in magnitude it
    is set to 0 (the reference turns NaN/inf there).
    """
    if negative not in ("clamp", "signed"):
        raise ConfigError(f"negative must be 'clamp' or 'signed'; got {negative!r}.")
    magnitude = cosine.clamp(min=0) if negative == "clamp" else cosine.abs()
    exact = magnitude.detach().pow(alpha)
    floored = magnitude.clamp(min=_GRADIENT_FLOOR)
    smooth = floored.pow(alpha)
    # The forward value is the exact power; the gradient flows only through the floored
    # branch, whose clamp passes none below the floor.
    value = exact + (smooth - smooth.detach())
    return value if negative == "clamp" else torch.sign(cosine).detach() * value


def alpha_sparsity_contrastive_loss(
    features: torch.Tensor,  # [B, D]
    labels: torch.Tensor,  # [B] int64
    proto_vectors: torch.Tensor,  # [P, D] global cluster prototypes
    proto_labels: torch.Tensor,  # [P] int64
    alpha: float = DEFAULT_ALPHA,
    temperature: float = DEFAULT_TEMPERATURE,
    negative: NegativeCosine = "clamp",
) -> torch.Tensor:
    """FedPLVM's alpha-sparsity prototype contrastive loss, averaged over the batch:
    ``-log( sum_{p in P_y} exp(s_p) / sum_{a} exp(s_a) )`` with ``s = cos(z, c)^alpha / tau``.

    As :func:`protofl.algorithms.losses.cluster_contrastive_loss`, it is a difference of
    ``logsumexp``; a sample whose class has no prototype contributes 0 and still counts in B
    (the reference returns ``inf`` there).
    """
    if alpha <= 0 or temperature <= 0:
        raise ConfigError(f"alpha and temperature must be > 0; got {alpha}, {temperature}.")
    cosine = F.normalize(features, dim=1) @ F.normalize(proto_vectors, dim=1).T  # [B, P]
    logits = alpha_power(cosine, alpha, negative) / temperature  # [B, P]
    return multi_positive_infonce(logits, labels, proto_labels)


def cosine_correction_loss(
    features: torch.Tensor,  # [B, D]
    labels: torch.Tensor,  # [B] int64
    class_prototypes: torch.Tensor,  # [C, D] global (average) prototypes
    has_prototype: torch.Tensor,  # [C] bool
    scale: float = DEFAULT_CORRECTION_SCALE,
) -> torch.Tensor:
    """FedPLVM's correction term ``scale * sum_i (cos(z_i, p_{y_i}) - 1)^2 / B``.

    The reference is ``2 * MSELoss(cos, 1)``; samples whose class has no prototype contribute
    0 and still count in B (the reference raises a KeyError there).
    """
    batch = features.shape[0]
    cosine = F.cosine_similarity(features, class_prototypes[labels], dim=1)  # [B]
    squared = (cosine - 1).pow(2)  # [B]
    kept = torch.where(has_prototype[labels], squared, torch.zeros_like(squared))
    return scale * kept.sum() / batch
