"""Turn loaded domains and client plans into a :class:`Federation` of tensors.

Each domain's train images are converted once -- and only the samples some client holds
(1% per client of MNIST's 60,000 leaves a few thousand) -- into one uint8 tensor that all of
the domain's clients index into. Test splits are converted whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from protofl.data.domain import Domain
from protofl.data.partition import ClientPlan
from protofl.data.transforms import ImagePipeline, to_model_images
from protofl.engine.data import ClientData, Federation, TensorSet, TestSet


def build_federation(
    domains: Sequence[Domain],
    plans: Sequence[ClientPlan],
    num_classes: int,
    image_size: int = 32,
    augment: bool = True,
    flip: bool = True,
) -> Federation:
    """Clients (in plan order) and test sets (in domain order) as shared uint8 tensors."""
    pipeline = ImagePipeline(augment=augment, flip=flip)
    clients: list[ClientData] = []
    tests: list[TestSet] = []
    for domain in domains:
        own = [plan for plan in plans if plan.domain == domain.name]
        used = np.unique(np.concatenate([plan.indices for plan in own])) if own else None
        if used is not None:
            source = TensorSet(
                to_model_images(domain.x_train[used], image_size),
                domain.y_train[torch.from_numpy(used)],
            )
            for plan in own:
                local = torch.from_numpy(np.searchsorted(used, plan.indices))
                clients.append(ClientData(plan.client_id, domain.name, source, local, pipeline))
        test_data = TensorSet(to_model_images(domain.x_test, image_size), domain.y_test)
        tests.append(TestSet(domain.name, test_data, pipeline))
    order = {plan.client_id: i for i, plan in enumerate(plans)}
    clients.sort(key=lambda client: order[client.client_id])
    return Federation(tuple(clients), tuple(tests), num_classes)


def build_holdout_sets(
    domains: Sequence[Domain], image_size: int = 32, flip: bool = True
) -> tuple[TestSet, ...]:
    """For domains no client holds: each one's training and test samples together, scored
    as a test set (a domain never seen in training has no reason to keep its test split)."""
    pipeline = ImagePipeline(augment=False, flip=flip)
    sets = []
    for domain in domains:
        images = np.concatenate([domain.x_train, domain.x_test])
        labels = torch.cat([domain.y_train, domain.y_test])
        sets.append(
            TestSet(domain.name, TensorSet(to_model_images(images, image_size), labels), pipeline)
        )
    return tuple(sets)
