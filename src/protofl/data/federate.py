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
