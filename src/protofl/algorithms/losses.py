"""Loss terms as pure functions: tensors in, a scalar tensor out.

The FPL terms follow Huang et al., "Rethinking Federated Learning with Domain Shift: A
Prototype View", CVPR 2023: cluster prototypes contrastive learning (CPCL, Eq. 8) and
unbiased prototypes consistent regularization (UPCR, Eq. 10). Both are vectorised over the
batch (the reference loops over samples in Python); tests compare them with a plain loop.

The baselines' terms live here too: FedProx's proximal term, MOON's model-contrastive loss
and FedDyn's dynamic regulariser. FedProc reuses :func:`cluster_contrastive_loss` (one
prototype per class, temperature 1) and FedProto :func:`unbiased_consistency_loss` (its
target is the global prototype).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F


def cluster_contrastive_loss(
    features: torch.Tensor,  # [B, D]
    labels: torch.Tensor,  # [B] int64
    prototypes: torch.Tensor,  # [P, D]
    prototype_labels: torch.Tensor,  # [P] int64
    temperature: float,
) -> torch.Tensor:
    """Multi-positive InfoNCE over cosine similarity to cluster prototypes (FPL Eq. 8).

    For a sample of class k with cluster prototypes P_k (positives) among all prototypes A:
    ``-log( sum_{p in P_k} exp(s_p) / sum_{a in A} exp(s_a) )`` with ``s = cos(z, c) / tau``.
    Computed as a difference of two ``logsumexp`` so that small temperatures cannot overflow
    (the reference's raw ``exp`` turns NaN for tau below about 0.011 in fp32).

    Samples whose class has no prototype contribute 0 but still count in the batch size,
    as in the reference: the result is the sum over samples divided by B. An all-zero
    feature has no direction; as with the reference's ``cosine_similarity`` its gradient is
    then ill-defined (pooled post-ReLU features of a real backbone are never exactly zero).
    """
    similarity = F.normalize(features, dim=1) @ F.normalize(prototypes, dim=1).T  # [B, P]
    return multi_positive_infonce(similarity / temperature, labels, prototype_labels)


def multi_positive_infonce(
    logits: torch.Tensor,  # [B, P] similarity / temperature
    labels: torch.Tensor,  # [B] int64
    prototype_labels: torch.Tensor,  # [P] int64
) -> torch.Tensor:
    """``sum_i -log( sum_{p of class y_i} exp(l_ip) / sum_p exp(l_ip) ) / B`` as a difference
    of two ``logsumexp``; rows without a positive contribute 0 and still count in B."""
    batch = logits.shape[0]
    positive = labels[:, None] == prototype_labels[None, :]  # [B, P]
    has_positive = positive.any(dim=1)  # [B]
    # Rows without positives would give logsumexp(-inf) = -inf and NaN gradients; give them
    # all prototypes as "positives" (loss 0) and mask them out below.
    positive = positive | ~has_positive[:, None]
    positive_logits = logits.masked_fill(~positive, float("-inf"))
    per_sample = torch.logsumexp(logits, dim=1) - torch.logsumexp(positive_logits, dim=1)
    per_sample = torch.where(has_positive, per_sample, torch.zeros_like(per_sample))
    return per_sample.sum() / batch


def unbiased_consistency_loss(
    features: torch.Tensor,  # [B, D]
    labels: torch.Tensor,  # [B] int64
    unbiased: torch.Tensor,  # [C, D]
    has_prototype: torch.Tensor,  # [C] bool
    reduction: Literal["mean", "sum"] = "mean",
) -> torch.Tensor:
    """Squared distance of each feature to its class's unbiased prototype (FPL Eq. 10).

    ``reduction`` is over the D feature dimensions: ``"mean"`` (default) is what the
    reference code computes (``nn.MSELoss``) and what its published numbers used; ``"sum"``
    is the paper's Eq. 10 as written, D times larger. Over the batch, as for CPCL, samples
    whose class has no prototype contribute 0 and the sum is divided by B.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum'; got {reduction!r}.")
    batch = features.shape[0]
    squared = (features - unbiased[labels]).pow(2)  # [B, D]
    per_sample = squared.mean(dim=1) if reduction == "mean" else squared.sum(dim=1)
    mask = has_prototype[labels]  # [B]
    return torch.where(mask, per_sample, torch.zeros_like(per_sample)).sum() / batch


def proximal_loss(
    parameters: Sequence[torch.Tensor],
    anchors: Sequence[torch.Tensor],
    mu: float,
) -> torch.Tensor:
    """FedProx's proximal term ``mu / 2 * sum_j ||w_j - w_global_j||^2`` (Li et al., MLSys
    2020, Eq. 2), over matching lists of local parameters and the round's global values.

    The anchors carry no gradient; the gradient on ``w_j`` is ``mu * (w_j - w_global_j)``.
    """
    total = parameters[0].new_zeros(())
    for weight, anchor in zip(parameters, anchors, strict=True):
        total = total + (weight - anchor.detach()).pow(2).sum()
    return 0.5 * mu * total


def model_contrastive_loss(
    features: torch.Tensor,  # [B, D] the local model's, with gradient
    global_features: torch.Tensor,  # [B, D] the global model's (positive)
    previous_features: torch.Tensor,  # [B, D] the previous local model's (negative)
    temperature: float,
) -> torch.Tensor:
    """MOON's model-contrastive loss (Li, He, Song, CVPR 2021, Eq. 3), averaged over the batch:
    ``-log( exp(cos(z, z_glob)/tau) / (exp(cos(z, z_glob)/tau) + exp(cos(z, z_prev)/tau)) )``.

    Written as ``logsumexp`` minus the positive logit, i.e. cross-entropy with target 0 over
    the two logits, as MOON's code computes it.
    """
    positive = F.cosine_similarity(features, global_features, dim=1)  # [B]
    negative = F.cosine_similarity(features, previous_features, dim=1)  # [B]
    logits = torch.stack([positive, negative], dim=1) / temperature  # [B, 2]
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def dynamic_regularizer(
    parameters: Sequence[torch.Tensor],
    linear_terms: Sequence[torch.Tensor],
    anchors: Sequence[torch.Tensor],
    alpha: float,
) -> torch.Tensor:
    """FedDyn's dynamic regulariser on the *local* parameters (Acar et al., ICLR 2021,
    Algorithm 1): ``sum_j ( -<g_j, w_j> + alpha / 2 * ||w_j - w_global_j||^2 )``.

    ``g_j`` is the client's linear-term state (the gradient of its loss at its previous
    local optimum) and ``w_global_j`` the round's global value; neither carries gradient, so
    the gradient on ``w_j`` is ``-g_j + alpha * (w_j - w_global_j)``.
    """
    total = parameters[0].new_zeros(())
    for weight, linear, anchor in zip(parameters, linear_terms, anchors, strict=True):
        total = total - (linear.detach() * weight).sum()
        total = total + 0.5 * alpha * (weight - anchor.detach()).pow(2).sum()
    return total
