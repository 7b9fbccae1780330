"""The one round loop: broadcast, local training on every client, aggregation, evaluation.

Clients run one after another in this process on a single worker model, so memory grows
with the number of clients only by their index tensors, their client-only state and one
update each per round. Server and clients exchange only payload dataclasses.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from torch import nn

from protofl.algorithms.base import Algorithm
from protofl.config import EVAL_BATCH_SIZE
from protofl.core.payloads import ClientUpdate, GlobalState, ServerMessage, StateDict
from protofl.core.records import Observer, RoundRecord
from protofl.engine.attacks import LABEL_FLIPS, NO_ATTACK, Attack, flipped_labels, poisoned
from protofl.engine.backdoor import attack_success_rate, backdoored, triggered_test_sets
from protofl.engine.client import copy_state, run_client_round
from protofl.engine.data import ClientData, Federation, TestSet
from protofl.engine.evaluate import evaluate, evaluate_personal, evaluate_round, mean_accuracy
from protofl.engine.local import LocalSettings, make_forward
from protofl.engine.precision import FP32, Precision
from protofl.engine.root_set import root_weights
from protofl.engine.round_attacks import ROUND_ATTACKS, crafted_round
from protofl.federation.health import collapse_warning
from protofl.federation.participation import sample_clients
from protofl.federation.privacy import PrototypePrivacy
from protofl.federation.screening import distance_screen, report, screen_update
from protofl.models.base import check_feature_model

logger = logging.getLogger(__name__)


@dataclass
class Simulation:
    """A running federation: the algorithm, the data, the global state and client states."""

    algorithm: Algorithm
    model: nn.Module  # the global model, on the run's device
    federation: Federation
    local: LocalSettings
    state: GlobalState
    seed: int = 0
    eval_batch_size: int = EVAL_BATCH_SIZE
    precision: Precision = FP32
    privacy: PrototypePrivacy = field(default_factory=PrototypePrivacy)
    compile_backend: str = ""  # torch.compile backend for the local forward pass; "" off
    clients_per_round: float = 1.0  # <= 1: fraction of the clients per round; > 1: count
    client_states: dict[str, StateDict] = field(default_factory=dict)
    history: list[RoundRecord] = field(default_factory=list)
    attack: Attack = NO_ATTACK  # malicious clients for robustness runs; the server is not told
    # FLTrust: the server's root set, trained on each round before aggregation (None: no root)
    root_set: ClientData | None = None
    distance_screen: float = 0.0  # > 0: screening.distance_screen's factor (holds the round)

    def __post_init__(self) -> None:
        self._warned = False
        self._poisoned: dict[str, ClientData] = {}  # attack=backdoor: the liars' data
        self._triggered: tuple[TestSet, ...] | None = None  # and the triggered test images
        self._server_step: dict[str, dict[str, float]] | None = None
        self.precision.prepare_model(self.model)
        self._worker = copy.deepcopy(self.model)
        self._forward = make_forward(self._worker, self.compile_backend)
        self._device = next(self.model.parameters()).device
        first = self.federation.clients[0]
        example = self.precision.prepare_input(
            first.transform.eval(first.source.inputs[first.indices[:2]])
        )
        self._feature_dim = check_feature_model(self.model, example, self.federation.num_classes)

    @classmethod
    def start(
        cls,
        algorithm: Algorithm,
        model: nn.Module,
        federation: Federation,
        local: LocalSettings,
        seed: int = 0,
        eval_batch_size: int = EVAL_BATCH_SIZE,
        precision: Precision = FP32,
        privacy: PrototypePrivacy | None = None,
        compile_backend: str = "",
        clients_per_round: float = 1.0,
    ) -> Simulation:
        """A simulation at round 0, its global state taken from ``model``'s weights."""
        precision.prepare_model(model)  # fp64 casts the weights: the state must hold those
        state = algorithm.init_state(copy_state(model))
        return cls(
            algorithm,
            model,
            federation,
            local,
            state,
            seed,
            eval_batch_size,
            precision,
            privacy or PrototypePrivacy(),
            compile_backend,
            clients_per_round,
        )

    def run(
        self,
        rounds: int,
        observer: Observer | None = None,
        after_round: Callable[[Simulation], None] | None = None,
    ) -> list[RoundRecord]:
        """Run until ``rounds`` rounds are completed in total (resumed runs continue)."""
        while self.state.round < rounds:
            record = self.step(rounds, observer)
            if observer is not None:
                observer.round_finished(record)
            if after_round is not None:
                after_round(self)
        return self.history

    def step(self, rounds: int, observer: Observer | None = None) -> RoundRecord:
        """Run one round: every client trains, the server aggregates, the model is tested."""
        message = self.algorithm.message(self.state)
        if observer is not None:
            observer.round_started(message.round, rounds)
        started = time.perf_counter()
        updates, rejected = self._collect_updates(message, observer)
        record = evaluate_round(
            self.state,
            updates,
            rejected,
            started,
            model=self.model,
            test_sets=self.federation.test_sets,
            eval_batch_size=self.eval_batch_size,
            precision=self.precision,
            privacy=self.privacy,
            server_step=self._server_step,
            validation_sets=self.federation.validation_sets,
            holdout_sets=self.federation.holdout_sets,
        )
        record = self._with_personal_accuracy(record)
        record = self._with_attack_success(record)
        self.history.append(record)
        logger.info("round %d: mean accuracy %.4f", record.round, record.mean_accuracy)
        self._warn_on_collapse()
        return record

    def _warn_on_collapse(self) -> None:
        """Once per run: say so when training collapses without a NaN."""
        if self._warned:
            return
        classes = self.federation.num_classes
        message = collapse_warning(
            self.history,
            classes,
            getattr(self.algorithm, "name", ""),
            getattr(getattr(self.algorithm, "config", None), "temperature", None),
        )
        if message is not None:
            logger.warning(message)
            self._warned = True

    def _with_personal_accuracy(self, record: RoundRecord) -> RoundRecord:
        """Add each domain's personalised accuracy when the algorithm keeps local layers."""
        clients = []
        for client in self.federation.clients:
            state = self.client_states.get(client.client_id, {})
            weights = self.algorithm.personal_weights(self.state.weights, state)
            if weights is None:
                return record
            clients.append((client.domain, weights))
        started = time.perf_counter()
        personal = evaluate_personal(
            self._worker, clients, self.federation.test_sets, self.eval_batch_size, self.precision
        )
        return dataclasses.replace(
            record,
            personal_accuracy=personal,
            personal_mean_accuracy=mean_accuracy(personal),
            eval_seconds=record.eval_seconds + time.perf_counter() - started,
        )

    def _with_attack_success(self, record: RoundRecord) -> RoundRecord:
        """Add the backdoor's success on the triggered test images (attack=backdoor only)."""
        if self.attack.name != "backdoor":
            return record
        if self._triggered is None:  # built once: the test splits do not change
            self._triggered = triggered_test_sets(
                self.federation.test_sets, self.attack.backdoor_target
            )
        started = time.perf_counter()
        hits = evaluate(self.model, self._triggered, self.eval_batch_size, self.precision)
        return dataclasses.replace(
            record,
            attack_success_rate=attack_success_rate(hits, self._triggered),
            eval_seconds=record.eval_seconds + time.perf_counter() - started,
        )

    def _collect_updates(
        self, message: ServerMessage, observer: Observer | None
    ) -> tuple[list[ClientUpdate], dict[str, str]]:
        """Train every client, screen each update and hand it to the algorithm's aggregation
        as it arrives; set the new state. Returns the kept updates without their weights (for
        the round's record) and ``{client: why}`` for what was refused. An attack that reads
        the round's honest updates (ROUND_ATTACKS) holds every update of the round first."""
        aggregation = self.algorithm.start_aggregation(self.state, self._root_weights(message))
        kept: list[ClientUpdate] = []
        rejected: dict[str, str] = {}
        updates: Iterable[ClientUpdate] = self._trained(message, observer)
        if self.attack.name in ROUND_ATTACKS:
            updates = crafted_round(
                list(updates),
                self.attack.malicious,
                self.attack.name,
                self.attack.strength,
                self.attack.perturbation,
                message.weights,
            )
        valid: Iterable[ClientUpdate] = self._well_formed(updates, rejected)
        if self.distance_screen > 0:  # it needs the whole round: hold it
            valid, far = distance_screen(list(valid), self.state.weights, self.distance_screen)
            rejected.update(far)
        for update in valid:
            aggregation.add(update)
            kept.append(dataclasses.replace(update, weights={}))
        report(rejected, len(kept), message.round)
        self.state = aggregation.result()
        # an aggregation may say what it did (FedHEAL's weights and masks); see RoundRecord
        self._server_step = getattr(aggregation, "report", None)
        return kept, rejected

    def _well_formed(
        self, updates: Iterable[ClientUpdate], rejected: dict[str, str]
    ) -> Iterator[ClientUpdate]:
        """The updates fit to aggregate, lazily; why the others were refused goes in
        ``rejected`` (screening.screen_update: malformed weights or prototypes)."""
        for update in updates:
            screened, reason = screen_update(
                update, self.state.weights, self.federation.num_classes, self._feature_dim
            )
            if reason is not None:
                rejected[update.client_id] = reason
            if screened is not None:
                yield screened

    def _trained(self, message: ServerMessage, observer: Observer | None) -> Iterator[ClientUpdate]:
        """The round's updates, one client trained at a time (lazily: the clean loop streams)."""
        clients = self.federation.clients
        for index in sample_clients(len(clients), self.clients_per_round, self.seed, message.round):
            yield self._train_client(index, clients[index], message)
            if observer is not None:
                observer.client_finished(message.round, clients[index].client_id)

    def _root_weights(self, message: ServerMessage) -> StateDict | None:
        """FLTrust's server model for this round (:func:`engine.root_set.root_weights`)."""
        if self.root_set is None:
            return None
        return root_weights(
            self.algorithm.context,
            self._worker,
            self.root_set,
            message,
            self.local,
            self.seed,
            len(self.federation.clients),
            self.precision,
            self._forward,
        )

    def _train_client(self, index: int, client: ClientData, message: ServerMessage) -> ClientUpdate:
        state = self.client_states.get(client.client_id, {})
        lies = self.attack.lies(client.client_id)
        if lies and self.attack.name in LABEL_FLIPS:
            client = flipped_labels(client, self.federation.num_classes, self.attack.name)
        if lies and self.attack.name == "backdoor":
            if client.client_id not in self._poisoned:  # the liar's own copy, made once
                self._poisoned[client.client_id] = backdoored(
                    client, self.attack.backdoor_target, self.attack.backdoor_fraction, self.seed
                )
            client = self._poisoned[client.client_id]
        update, new_state = run_client_round(
            self.algorithm,
            self._worker,
            client,
            index,
            message,
            state,
            self.local,
            self.seed,
            self.precision,
            self.privacy,
            self._forward,
        )
        if new_state:
            self.client_states[client.client_id] = new_state
        if lies:
            update = poisoned(
                update,
                message.weights,
                self.attack,
                self.seed,
                index,
                message.round,
                self.federation.num_classes,
            )
        return update
