"""TensorBoard for a run (``pip install 'protofl[tensorboard]'``, ``--set tensorboard=true``):
event files in ``<run folder>/tensorboard/``, written after every round by the simulator and
the Flower server alike.

Scalars per round: the mean and per-domain accuracy (and the personalised ones, for
algorithms with local layers), the spread across domains, the worst domain's accuracy and
the accuracy pooled over all test samples, every loss term and the train accuracy, each client's
metrics, the round's training and evaluation seconds and the privacy spent. The projector
gets the prototypes the server broadcast that round, with class, kind, domain and round as
metadata: FPL's cluster prototypes and the unbiased prototype of each class (their mean),
FedProto's and FedProc's global prototypes, FedPLVM's global clusters, FedDAP's per-domain
prototypes. Watching FPL's clusters per class shrink to one in late rounds is what FINCH's
collapse looks like. The clients' own local prototypes never reach the server's state, so
they are not shown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from protofl.algorithms.prototypes import class_means
from protofl.core.payloads import GlobalState, Prototypes
from protofl.core.records import RoundRecord
from protofl.errors import ConfigError

FOLDER = "tensorboard"


class TensorBoardLog:
    """Writes one run's scalars and prototype embeddings."""

    def __init__(
        self,
        run_dir: Path,
        num_classes: int,
        domains: dict[int, str] | None = None,
        name: str = "run",
    ):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ConfigError(
                "tensorboard=true needs TensorBoard: pip install 'protofl[tensorboard]'."
            ) from err
        # a named subfolder, so `tensorboard --logdir runs/` labels each run by it
        self.writer: Any = SummaryWriter(log_dir=str(run_dir / FOLDER / name))
        self.num_classes = num_classes
        self.domains = domains or {}  # domain id -> name, for domain-tagged prototypes

    def write_round(self, record: RoundRecord, state: GlobalState) -> None:
        step = record.round
        scalars = {"accuracy/mean": record.mean_accuracy}
        scalars.update({f"accuracy/{d}": v for d, v in record.per_domain_accuracy.items()})
        fairness = {
            "fairness/domain_std": record.domain_std,
            "fairness/worst_domain": record.worst_domain_accuracy,
            "accuracy/pooled": record.pooled_accuracy,
            "attack/success_rate": record.attack_success_rate,  # attack=backdoor only
        }
        scalars.update({tag: value for tag, value in fairness.items() if value is not None})
        if record.personal_accuracy is not None and record.personal_mean_accuracy is not None:
            scalars["personal_accuracy/mean"] = record.personal_mean_accuracy
            scalars.update(
                {f"personal_accuracy/{d}": v for d, v in record.personal_accuracy.items()}
            )
        scalars.update({f"train/{k}": v for k, v in record.train.items()})
        for client, metrics in record.clients.items():
            scalars.update({f"clients/{client}/{k}": v for k, v in metrics.items()})
        scalars["time/train_seconds"] = record.train_seconds
        scalars["time/eval_seconds"] = record.eval_seconds
        scalars["prototypes/count"] = float(record.num_prototypes)
        if record.privacy_epsilon is not None:
            scalars["privacy/epsilon"] = record.privacy_epsilon
        for name, records in (
            ("holdout", record.holdout_accuracy),
            ("validation", record.validation_accuracy),
        ):
            scalars.update({f"{name}/{d}": v for d, v in (records or {}).items()})
        for client, values in (record.server_step or {}).items():
            scalars.update({f"server/{key}/{client}": v for key, v in values.items()})
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)
        if state.prototypes is not None and len(state.prototypes):
            self._embed(state.prototypes, step)
        self.writer.flush()

    def _embed(self, prototypes: Prototypes, step: int) -> None:
        cpu = prototypes.to("cpu")
        rows = [cpu.vectors]
        several = int(cpu.labels.unique().numel()) < len(cpu)
        kind = "per domain" if cpu.domains is not None else "cluster" if several else "global"
        metadata = [
            [str(int(c)), kind, self._domain(cpu, i), str(step)] for i, c in enumerate(cpu.labels)
        ]
        if cpu.domains is None and several:
            # several prototypes per class (FPL's clusters): their mean, FPL's unbiased one
            means, has = class_means(cpu, self.num_classes)
            classes = torch.nonzero(has).flatten()
            rows.append(means[classes])
            metadata += [[str(int(c)), "unbiased (class mean)", "-", str(step)] for c in classes]
        self.writer.add_embedding(
            torch.cat(rows),
            metadata=metadata,
            metadata_header=["class", "kind", "domain", "round"],
            global_step=step,
            tag="prototypes",
        )

    def _domain(self, prototypes: Prototypes, index: int) -> str:
        if prototypes.domains is None:
            return "-"
        tag = int(prototypes.domains[index])
        return self.domains.get(tag, str(tag))

    def close(self) -> None:
        self.writer.close()
