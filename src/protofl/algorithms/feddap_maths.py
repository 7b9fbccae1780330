"""FedDAP's maths as pure functions: domain-specific prototypes, their similarity-weighted
merge, and the two alignment losses.

Le, Nguyen, Qiao, Kim, Huh, Hong, "FedDAP: Domain-Aware Prototype Learning for Federated
Learning under Domain Shift", CVPR 2026 (arXiv 2604.06795); reference code
``quanghuy6997/FedDAP``, ``models/feddap.py`` (which does not run as released: an undefined
``loss_cross_proto`` in a progress message, ``super(feddomain, ...)`` and an undefined ``dp``).

* Client: one prototype per class (its domain is the client's), the class mean of the last
  local epoch's features plus Gaussian noise.
* Server: per (class, domain), the clients' prototypes ``p_i`` are merged as
  ``sum_i a_i p_i`` with ``a = softmax_i( sum_j cos(p_i, p_j) / T )`` (T = 0.001 at the call
  site, so the merge is close to picking the most central prototype).
* Client loss ``CE + lambda_1 L_DPA + lambda_2 L_CPCL`` (both lambdas 1): ``L_DPA`` is
  ``1 - cos`` to the prototype of the sample's class *and the client's domain*; ``L_CPCL`` is
  InfoNCE over prototypes of *other* domains only, positives of the sample's class.

Domains are integer ids (the benchmark's domain of each client); a prototype set carries a
``[P]`` domain tensor next to its ``Prototypes``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from protofl.core.payloads import Prototypes
from protofl.errors import ConfigError

DEFAULT_NOISE_STD = 0.005  # reference dp(): N(0, 0.05) * 0.1
DEFAULT_MERGE_TEMPERATURE = 0.001  # reference loc_update: proto_aggregation_attn(..., 0.001)
DEFAULT_CONTRASTIVE_TEMPERATURE = 0.02  # reference main.py --infoNCET


def perturb_prototypes(
    vectors: torch.Tensor,  # [P, D] class means
    support: torch.Tensor,  # [P] samples behind each mean
    noise_std: float,
    generator: torch.Generator,
    divide_by_support: bool = True,
) -> torch.Tensor:  # [P, D]
    """Add Gaussian noise of standard deviation ``noise_std`` to each prototype.

    The reference adds the noise to the per-class *sum* of features and then divides by the
    count, so the mean's noise is ``noise_std / n`` (``divide_by_support=True``, the default);
    ``False`` adds ``noise_std`` to the mean itself.
    """
    noise = torch.randn(vectors.shape, generator=generator, dtype=vectors.dtype)  # [P, D]
    noise = noise.to(vectors.device) * noise_std
    if divide_by_support:
        noise = noise / support.to(vectors.dtype).clamp(min=1)[:, None]
    return vectors + noise


def merge_domain_prototypes(
    vectors: torch.Tensor,  # [P, D] all clients' prototypes
    labels: torch.Tensor,  # [P] int64 class
    domains: torch.Tensor,  # [P] int64 domain
    temperature: float = DEFAULT_MERGE_TEMPERATURE,
) -> tuple[Prototypes, torch.Tensor]:  # merged (support: members), [G] domains
    """Per (class, domain) group, ``sum_i a_i p_i`` with ``a = softmax_i(sum_j cos_ij / T)``.

    Vectorised over groups with a segment softmax; ``j`` runs over the group including ``i``
    (a constant 1 in every row, which the softmax ignores). A group of one is that prototype.
    Groups come out sorted by (class, domain).
    """
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0; got {temperature}.")
    keys = torch.stack([labels, domains], dim=1)  # [P, 2]
    unique, group = torch.unique(keys, dim=0, return_inverse=True)  # [G, 2], [P]
    count = unique.shape[0]
    unit = F.normalize(vectors, dim=1)
    same = group[:, None] == group[None, :]  # [P, P]
    score = ((unit @ unit.T) * same).sum(dim=1) / temperature  # [P]
    top = torch.full((count,), float("-inf"), dtype=score.dtype, device=score.device)
    top = top.scatter_reduce(0, group, score, reduce="amax")  # [G]
    weight = (score - top[group]).exp()  # [P]
    total = torch.zeros(count, dtype=score.dtype, device=score.device).index_add(0, group, weight)
    weight = weight / total[group]
    merged = torch.zeros(count, vectors.shape[1], dtype=vectors.dtype, device=vectors.device)
    merged = merged.index_add(0, group, weight[:, None] * vectors)  # [G, D]
    members = torch.bincount(group, minlength=count)  # [G]
    return Prototypes(merged, unique[:, 0].clone(), members), unique[:, 1].clone()


def domain_alignment_loss(
    features: torch.Tensor,  # [B, D]
    labels: torch.Tensor,  # [B] int64
    domain: int,
    proto_vectors: torch.Tensor,  # [P, D] merged (class, domain) prototypes
    proto_labels: torch.Tensor,  # [P] int64
    proto_domains: torch.Tensor,  # [P] int64
) -> torch.Tensor:
    """FedDAP's domain-consistent prototype alignment, ``sum_i (1 - cos(z_i, g_{y_i, d})) / B``
    with ``d`` the client's domain. A sample without a prototype for its (class, domain)
    contributes 0 and still counts in B (the reference aligns it with itself)."""
    batch = features.shape[0]
    match = (labels[:, None] == proto_labels[None, :]) & (proto_domains == domain)[None, :]
    has_target = match.any(dim=1)  # [B]
    target = proto_vectors[match.float().argmax(dim=1)]  # [B, D] first match per sample
    distance = 1 - F.cosine_similarity(features, target.detach(), dim=1)  # [B]
    distance = torch.where(has_target, distance, torch.zeros_like(distance))
    return distance.sum() / batch


def cross_domain_contrastive_loss(
    features: torch.Tensor,  # [B, D]
    labels: torch.Tensor,  # [B] int64
    domain: int,
    proto_vectors: torch.Tensor,  # [P, D]
    proto_labels: torch.Tensor,  # [P] int64
    proto_domains: torch.Tensor,  # [P] int64
    temperature: float = DEFAULT_CONTRASTIVE_TEMPERATURE,
) -> torch.Tensor:
    """FedDAP's cross-domain prototype contrastive loss, summed over samples and divided by B.

    Only prototypes of other domains take part: positives are those of the sample's class,
    negatives those of other classes; ``-log(sum_pos exp(s) / sum_all exp(s))`` with
    ``s = cos / T``. A sample with no positive or no negative contributes 0, as in the
    reference.
    """
    batch = features.shape[0]
    cosine = F.normalize(features, dim=1) @ F.normalize(proto_vectors.detach(), dim=1).T
    logits = cosine / temperature  # [B, P]
    other = (proto_domains != domain)[None, :]  # [1, P]
    same_class = labels[:, None] == proto_labels[None, :]  # [B, P]
    positive = same_class & other
    negative = ~same_class & other
    valid = positive.any(dim=1) & negative.any(dim=1)  # [B]
    # invalid rows would give logsumexp(-inf); give them every logit (loss 0) and mask below
    candidates = other | ~valid[:, None]
    positive = positive | ~valid[:, None]
    all_logits = logits.masked_fill(~candidates, float("-inf"))
    positive_logits = logits.masked_fill(~positive, float("-inf"))
    per_sample = torch.logsumexp(all_logits, dim=1) - torch.logsumexp(positive_logits, dim=1)
    per_sample = torch.where(valid, per_sample, torch.zeros_like(per_sample))
    return per_sample.sum() / batch
