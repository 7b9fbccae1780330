"""The generic server strategy: the simulator's round loop, with Flower messages as transport.

Each round: ``algorithm.message(state)`` is encoded for every connected node, sent with a
timeout, the replies are decoded and validated into :class:`~protofl.core.payloads.ClientUpdate`
s (a bad or failed reply is logged and that client dropped for the round), the updates are
put in federation order, the algorithm's aggregation folds them into the new
:class:`~protofl.core.payloads.GlobalState`, and the global model is tested on every domain.
Fewer than ``flower.min_clients`` valid updates stops the run with a
:class:`~protofl.errors.TrainingError`; nothing waits without a timeout.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from flwr.app import Message
from torch import nn

from protofl.algorithms.base import Algorithm
from protofl.config import RunConfig
from protofl.core.payloads import ClientUpdate, GlobalState, ServerMessage, StateDict
from protofl.core.records import RoundRecord
from protofl.engine.client import NO_PRIVACY, copy_state
from protofl.engine.data import ClientData, TestSet
from protofl.engine.evaluate import evaluate_round, mean_accuracy
from protofl.engine.local import LocalSettings, make_forward
from protofl.engine.precision import FP32, Precision
from protofl.engine.root_set import root_weights
from protofl.engine.round_attacks import crafted_round
from protofl.errors import ConfigError, PayloadError, TrainingError
from protofl.federation.health import collapse_warning
from protofl.federation.participation import sample_clients
from protofl.federation.privacy import PrototypePrivacy
from protofl.federation.screening import distance_screen
from protofl.flower.codec import (
    decode_validation_counts,
    encode_server_message,
    is_skipped,
    screen_client_update,
)
from protofl.flower.fields import Expected
from protofl.flower.malicious import RoundTag, take_round_attack
from protofl.flower.settings import FlowerSettings

logger = logging.getLogger(__name__)

TRAIN = "train"  # the message type the ClientApp's @app.train() handler answers
EVALUATE = "evaluate"  # ... and its @app.evaluate() handler (validation shares)


class Grid(Protocol):
    """The part of ``flwr.serverapp.Grid`` the strategy uses (a fake one in tests)."""

    def get_node_ids(self) -> Iterable[int]: ...

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]: ...


@dataclass(eq=False)
class ServerSetup:
    """What the server needs: the algorithm, the global model, the test sets, the settings."""

    algorithm: Algorithm
    model: nn.Module  # the global model, on the server's device, with its initial weights
    test_sets: tuple[TestSet, ...]
    num_classes: int
    feature_dim: int
    config: RunConfig
    settings: FlowerSettings
    num_clients: int | None = None  # the federation's size when the server knows it
    precision: Precision = FP32  # of the server's evaluation, as the simulator's
    privacy: PrototypePrivacy = NO_PRIVACY  # what the clients apply; the server accounts it
    resolved: dict[str, Any] = field(default_factory=dict)  # written into config.json
    holdout_sets: tuple[TestSet, ...] = ()  # held-out domains' samples (holdout_domains)
    # aggregation='fltrust': the server's root set and the loop it trains on it each round
    root_set: ClientData | None = None
    local: LocalSettings | None = None


class ProtoflStrategy:
    """Runs any registered algorithm over a Grid, round by round, holding the GlobalState."""

    def __init__(
        self,
        setup: ServerSetup,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if setup.config.clients_per_round != 1.0 and setup.num_clients is None:
            raise ConfigError(
                "clients_per_round needs the federation's size on the server (num_clients), "
                "to draw the round's clients as the simulator does."
            )
        self.setup = setup
        self.state: GlobalState = setup.algorithm.init_state(copy_state(setup.model))
        self.history: list[RoundRecord] = []
        self._clock, self._sleep = clock, sleep
        self._warned = False  # a collapse is reported once per run
        self._ids: dict[int, str] = {}  # client index -> id, as seen in updates
        self._absent: list[str] = []
        self._server_step: dict[str, dict[str, float]] | None = None
        # client index -> the node that holds it. Who a reply is from comes from the
        # transport (the message it answers was sent to that node), never from the payload:
        # a node claiming another node's client is refused, and named.
        self.node_of: dict[int, int] = {}
        self._round_liars: dict[str, RoundTag] = {}  # client id -> its omniscient attack
        self._message: ServerMessage | None = None  # the round's message (FLTrust trains from it)
        self._root_worker = self._check_root_set(setup)
        self._root_forward = (
            None
            if self._root_worker is None
            else make_forward(self._root_worker, setup.config.compile)
        )

    @staticmethod
    def _check_root_set(setup: ServerSetup) -> nn.Module | None:
        """FLTrust's server model (a copy of the global one), or None without fltrust."""
        if setup.config.aggregation != "fltrust":
            return None
        if setup.root_set is None or setup.local is None or setup.num_clients is None:
            raise ConfigError(
                "aggregation='fltrust' needs the server's root set: the benchmark ServerApp "
                "draws it as the simulator does; with your own data pass "
                "server_from_arrays(..., root_set=ClientArrays(x, y), num_clients=N)."
            )
        return copy.deepcopy(setup.model)

    def run(
        self, grid: Grid, after_round: Callable[[RoundRecord], None] | None = None
    ) -> list[RoundRecord]:
        """Wait for the nodes, then run rounds until ``config.rounds`` are completed."""
        self.wait_for_nodes(grid)
        while self.state.round < self.setup.config.rounds:
            record = self.run_round(grid)
            if after_round is not None:
                after_round(record)
        return self.history

    def wait_for_nodes(self, grid: Grid) -> list[int]:
        """Poll until the expected SuperNodes are connected, or until the node timeout."""
        settings = self.setup.settings
        wanted = settings.num_nodes or self.setup.num_clients or settings.min_clients
        deadline = self._clock() + settings.node_timeout
        nodes = sorted(grid.get_node_ids())
        while len(nodes) < wanted and self._clock() < deadline:
            self._sleep(1.0)
            nodes = sorted(grid.get_node_ids())
        if len(nodes) < settings.min_clients:
            raise _stop(
                f"only {len(nodes)} SuperNode(s) connected after {settings.node_timeout:g} s; "
                f"flower.min_clients is {settings.min_clients}. Fix: start more SuperNodes, or "
                "lower flower.min_clients."
            )
        if len(nodes) < wanted:
            logger.warning(
                "%d of %d expected SuperNodes connected after %g s; going on with them.",
                len(nodes),
                wanted,
                settings.node_timeout,
            )
        return nodes

    def configure_train(self, grid: Grid) -> list[Message]:
        """One message per connected node, each with its own freshly encoded content."""
        message = self.setup.algorithm.message(self.state)
        self._message = message
        ttl = self.setup.settings.round_timeout
        sampled = self.sampled(message.round)
        return [
            Message(
                encode_server_message(message, sampled),
                node,
                TRAIN,
                ttl=ttl,
                group_id=str(message.round),
            )
            for node in sorted(grid.get_node_ids())
        ]

    def sampled(self, round_index: int) -> list[int] | None:
        """The client indices that train this round (None: all); every node gets the list
        and a node whose client is not on it answers at once without training."""
        config, count = self.setup.config, self.setup.num_clients
        if config.clients_per_round == 1.0 or count is None:
            return None
        return sample_clients(count, config.clients_per_round, config.seed, round_index)

    def aggregate_train(
        self, round_index: int, sent: Sequence[Message], replies: Iterable[Message]
    ) -> tuple[list[ClientUpdate], dict[str, str]]:
        """Hand the valid updates to the algorithm's aggregation in federation order, as the
        simulator does, and set the new state. Returns the updates without their weights and
        ``{client or node: why}`` for everyone left out."""
        received, rejected = self._collect(round_index, sent, replies)
        self._note_absent(round_index, received)
        minimum = self.setup.settings.min_clients
        if len(received) < minimum:
            raise _stop(
                f"round {round_index}: only {len(received)} of {len(sent)} clients returned a "
                f"valid update ({', '.join(u.client_id for u in received.values()) or 'none'}); "
                f"flower.min_clients is {minimum}. Left out: "
                + "; ".join(f"{who}: {why}" for who, why in rejected.items())
            )
        received = self._as_crafted(received)
        factor = self.setup.config.distance_screen
        if factor > 0:  # as the simulator: after the malformed screen and the crafted step
            order = sorted(received)
            near, far = distance_screen([received[i] for i in order], self.state.weights, factor)
            rejected.update(far)
            kept_ids = {u.client_id for u in near}
            received = {i: received[i] for i in order if received[i].client_id in kept_ids}
        aggregation = self.setup.algorithm.start_aggregation(self.state, self._root_weights())
        kept = []
        for index in sorted(received):  # the simulator's order, so sums round the same way
            update = received[index]
            aggregation.add(update)
            kept.append(dataclasses.replace(update, weights={}))
        self.state = aggregation.result()
        self._server_step = getattr(aggregation, "report", None)  # as the simulator
        return kept, rejected

    def _as_crafted(self, received: dict[int, ClientUpdate]) -> dict[int, ClientUpdate]:
        """The omniscient attacker's step (alie, min-max, min-sum; see flower/malicious.py):
        the tagged updates replaced by the simulator's crafted ones, from the round's other
        updates, in federation order. Untouched when no reply was tagged."""
        if not self._round_liars:
            return received
        attacks = set(self._round_liars.values())
        if len(attacks) > 1:
            raise _stop(f"the malicious nodes run different omniscient attacks: {attacks}")
        (name, strength, kind), order = attacks.pop(), sorted(received)
        start = None if self._message is None else self._message.weights
        updates = [received[i] for i in order]
        liars = frozenset(self._round_liars)
        crafted = crafted_round(updates, liars, name, strength, kind, start)
        return dict(zip(order, crafted, strict=True))

    def _root_weights(self) -> StateDict | None:
        """FLTrust's server model for this round, as the simulator's server trains it
        (:func:`engine.root_set.root_weights`)."""
        setup, worker = self.setup, self._root_worker
        if worker is None or setup.root_set is None or setup.local is None:
            return None
        if self._message is None:
            raise TrainingError("FLTrust's server model needs the round's message first.")
        return root_weights(
            setup.algorithm.context,
            worker,
            setup.root_set,
            self._message,
            setup.local,
            setup.config.seed,
            setup.num_clients or 0,
            setup.precision,
            self._root_forward,
        )

    def _note_absent(self, round_index: int, received: dict[int, ClientUpdate]) -> None:
        """Which expected clients sent nothing usable this round, named as last seen."""
        self._ids.update({index: update.client_id for index, update in received.items()})
        count = self.setup.num_clients
        drawn = self.sampled(round_index)
        expected = drawn if drawn is not None else range(count or 0)
        self._absent = [self._ids.get(i, f"client {i}") for i in expected if i not in received]
        if self._absent:
            logger.warning("round %d: no update from %s", round_index, ", ".join(self._absent))

    def run_round(self, grid: Grid) -> RoundRecord:
        """Send, receive, aggregate, evaluate: one round, recorded as the simulator does."""
        messages = self.configure_train(grid)
        round_index = self.state.round + 1
        if len(messages) < self.setup.settings.min_clients:
            raise _stop(
                f"round {round_index}: only {len(messages)} SuperNode(s) connected; "
                f"flower.min_clients is {self.setup.settings.min_clients}."
            )
        started = time.perf_counter()
        replies = grid.send_and_receive(messages, timeout=self.setup.settings.round_timeout)
        updates, rejected = self.aggregate_train(round_index, messages, replies)
        setup = self.setup
        record = evaluate_round(
            self.state,
            updates,
            rejected,
            started,
            model=setup.model,
            test_sets=setup.test_sets,
            eval_batch_size=setup.config.eval_batch_size,
            precision=setup.precision,
            privacy=setup.privacy,
            server_step=self._server_step,
            holdout_sets=setup.holdout_sets,
        )
        record = dataclasses.replace(record, absent=list(self._absent))
        if setup.config.validation_fraction > 0:
            record = self.with_validation(grid, record)
        self.history.append(record)
        warning = collapse_warning(
            self.history,
            setup.num_classes,
            setup.algorithm.name,
            getattr(setup.algorithm.config, "temperature", None),
        )
        if warning is not None and not self._warned:
            logger.warning(warning)
            self._warned = True
        logger.info(
            "round %d: %d clients, mean accuracy %.4f",
            record.round,
            len(updates),
            record.mean_accuracy,
        )
        return record

    def with_validation(self, grid: Grid, record: RoundRecord) -> RoundRecord:
        """``record`` with the new global model's validation accuracy per domain: every node
        scores its client's validation share (an ``evaluate`` message) and the counts are
        added up per domain, in client order, as the simulator scores the pooled shares. A
        node that fails or claims a client it does not hold is left out and logged."""
        started = time.perf_counter()
        message = ServerMessage(self.state.round, self.state.weights)
        ttl = self.setup.settings.round_timeout
        nodes = sorted(grid.get_node_ids())
        sent = [
            Message(
                encode_server_message(message), node, EVALUATE, ttl=ttl, group_id=str(message.round)
            )
            for node in nodes
        ]
        counts: dict[int, tuple[str, int, int]] = {}
        replies = grid.send_and_receive(sent, timeout=ttl)
        for node, reply in _by_destination(sent, replies):
            if reply.has_error():
                logger.warning(
                    "round %d, node %d: no validation counts (%s)",
                    message.round,
                    node,
                    reply.error.reason,
                )
                continue
            try:
                index, domain, correct, count = decode_validation_counts(reply.content)
            except PayloadError as err:
                logger.warning("round %d, node %d: %s", message.round, node, err)
                continue
            if self.node_of.get(index, node) != node or index in counts:
                logger.warning(
                    "round %d, node %d: validation counts for client %d, which it does not "
                    "hold; left out",
                    message.round,
                    node,
                    index,
                )
                continue
            counts[index] = (domain, correct, count)
        per_domain: dict[str, list[int]] = {}
        for index in sorted(counts):
            domain, correct, count = counts[index]
            total = per_domain.setdefault(domain, [0, 0])
            total[0], total[1] = total[0] + correct, total[1] + count
        accuracy = {d: c / n for d, (c, n) in per_domain.items() if n > 0} or None
        return dataclasses.replace(
            record,
            validation_accuracy=accuracy,
            validation_mean_accuracy=mean_accuracy(accuracy) if accuracy else None,
            eval_seconds=record.eval_seconds + time.perf_counter() - started,
        )

    def _collect(
        self, round_index: int, sent: Sequence[Message], replies: Iterable[Message]
    ) -> tuple[dict[int, ClientUpdate], dict[str, str]]:
        """Decode every reply; log and note each failed, bad, repeated or missing one."""
        expected = Expected.like(self.state.weights, self.setup.num_classes, self.setup.feature_dim)
        received: dict[int, ClientUpdate] = {}
        rejected: dict[str, str] = {}
        connected = {m.metadata.dst_node_id for m in sent}
        answered: set[int] = set()
        claims: dict[int, list[tuple[int, ClientUpdate, str | None]]] = {}
        tags: dict[int, RoundTag | None] = {}  # node -> omniscient attack
        self._round_liars = {}
        for node, reply in _by_destination(sent, replies):
            answered.add(node)
            if not reply.has_error() and is_skipped(reply.content):
                continue  # its client was not drawn this round: nothing to aggregate
            try:
                tags[node] = None if reply.has_error() else take_round_attack(reply.content)
            except PayloadError as err:
                rejected[f"node {node}"] = f"update rejected: {err}"
                continue
            decoded = self._decode(node, reply, expected)
            if isinstance(decoded, str):
                rejected[f"node {node}"] = decoded
                continue
            update, index, problem = decoded
            claims.setdefault(index, []).append((node, update, problem))
        for index, claimants in sorted(claims.items()):
            chosen = self._bind(index, [node for node, _, _ in claimants], connected, rejected)
            for node, update, problem in claimants:
                if node != chosen:
                    continue
                if problem is not None:  # as the simulator: bad prototypes out, weights in
                    rejected[update.client_id] = f"prototypes rejected: {problem}"
                received[index] = update
                tag = tags.get(node)
                if tag is not None:
                    self._round_liars[update.client_id] = tag
        timeout = self.setup.settings.round_timeout
        for node in sorted({m.metadata.dst_node_id for m in sent} - answered):
            rejected[f"node {node}"] = f"no reply within {timeout:g} s; going on without it"
        rejected = self._by_client_name(rejected)
        for who, why in rejected.items():
            logger.warning("round %d, %s: %s", round_index, who, why)
        return received, rejected

    def _by_client_name(self, rejected: dict[str, str]) -> dict[str, str]:
        """Key a refusal by the client's id where the node is known to hold a client (the
        name ``absent`` and the clients' metrics use), the node going into the reason; a node
        never seen with a client stays ``node N``."""
        client_of_node = {node: index for index, node in self.node_of.items()}
        named: dict[str, str] = {}
        for who, why in rejected.items():
            node = int(who.removeprefix("node ")) if who.startswith("node ") else None
            index = client_of_node.get(node) if node is not None else None
            if index is not None and index in self._ids and self._ids[index] not in rejected:
                named[self._ids[index]] = f"node {node}: {why}"
            else:
                named[who] = why
        return named

    def _bind(
        self, index: int, nodes: list[int], connected: set[int], rejected: dict[str, str]
    ) -> int | None:
        """Which of ``nodes`` (each claiming client ``index`` this round) is counted, or None.

        The node that holds the index keeps it; a node holding another index cannot take a
        second one; the index moves to a new node only when its holder is no longer
        connected (a restarted SuperNode gets a new node id). Two new nodes claiming one
        free index in one round are both refused: which one lies cannot be told.
        """
        holder = self.node_of.get(index)
        held = {node: i for i, node in self.node_of.items()}
        candidates = []
        for node in nodes:
            other = held.get(node)
            if other is not None and other != index:
                rejected[f"node {node}"] = (
                    f"holds client index {other} but claimed client index {index}; dropped"
                )
            elif holder is not None and node != holder and holder in connected:
                rejected[f"node {node}"] = (
                    f"claimed client index {index}, which node {holder} holds; dropped (the "
                    "newcomer). Fix: give every SuperNode its own partition-id."
                )
            else:
                candidates.append(node)
        if len(candidates) > 1:
            for node in candidates:
                rejected[f"node {node}"] = (
                    f"claimed client index {index} together with node(s) "
                    f"{', '.join(str(n) for n in candidates if n != node)}; none is counted "
                    "until one of them is gone. Fix: give every SuperNode its own partition-id."
                )
            return None
        if not candidates:
            return None
        chosen = candidates[0]
        if holder is not None and holder != chosen:
            logger.warning(
                "client index %d moves from node %d (no longer connected) to node %d",
                index,
                holder,
                chosen,
            )
        self.node_of[index] = chosen
        return chosen

    def _decode(
        self, node: int, reply: Message, expected: Expected
    ) -> tuple[ClientUpdate, int, str | None] | str:
        """The reply's update, client index and any prototype problem, or why the whole
        update is left out of the round."""
        if reply.has_error():
            return f"failed (error {reply.error.code}: {reply.error.reason})"
        try:
            update, index, problem = screen_client_update(reply.content, expected, f"node {node}")
        except PayloadError as err:
            return f"update rejected: {err}"
        known = self.setup.num_clients
        if known is not None and index >= known:
            return f"client index {index} is outside the federation's 0..{known - 1}"
        return update, index, problem


def _stop(reason: str) -> TrainingError:
    logger.error("stopping: %s", reason)
    return TrainingError(reason)


def _by_destination(
    sent: Sequence[Message], replies: Iterable[Message]
) -> Iterator[tuple[int, Message]]:
    """Each reply with the node it was sent to. An error reply that the SuperLink makes for an
    unreachable node comes from the SuperLink's own node id, not the node's, so the reply's
    source cannot be trusted to name it."""
    destination = {m.metadata.message_id: m.metadata.dst_node_id for m in sent}
    for reply in replies:
        yield destination.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id), reply
