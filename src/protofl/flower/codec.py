"""Payloads <-> Flower records, with every received field validated.

Layout of a message's :class:`~flwr.app.RecordDict` (the same both ways):

``"weights"``
    ArrayRecord, one array per ``state_dict`` entry, dtypes kept (BatchNorm's int64
    ``num_batches_tracked`` stays int64).
``"prototypes"``
    ArrayRecord, one entry per class present, key ``str(class)``, a float32 ``[k, D]`` array
    (float64 under the fp64 precision: the dtype of the model's floating weights)
    of that class's ``k`` prototypes (``k`` differs between classes). Never pickled.
``"prototype_support"``
    ConfigRecord, key ``str(class)``, the ``k`` support counts of those prototypes.
``"prototype_domains"``
    ConfigRecord, key ``str(class)``, the ``k`` domain tags, for domain-tagged prototypes.
``"meta"``
    ConfigRecord of scalars: ``round`` and, with client sampling, ``sampled`` (server);
    ``client_id``, ``client_index`` and ``num_samples`` (client), or ``skipped`` from a node
    whose client was not drawn; ``prototype_dim`` when prototypes are present.
``"metrics"``
    MetricRecord of the client's loss terms and train accuracy.

Decoding checks keys, shapes, dtypes, finiteness and class ids against what the receiver
expects and raises :class:`~protofl.errors.PayloadError` naming the field and the fix.
"""

from __future__ import annotations

from typing import Any

import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from protofl.core.payloads import ClientUpdate, Prototypes, ServerMessage, StateDict
from protofl.errors import PayloadError
from protofl.flower.fields import (
    META,
    METRICS,
    WEIGHTS,
    Expected,
    is_int,
    meta_record,
    preview,
    read_int,
    read_metrics,
    read_weights,
    to_tensor,
)

PROTOTYPES, SUPPORT, DOMAINS = "prototypes", "prototype_support", "prototype_domains"
CLIENT_STATE = "protofl.client_state"  # the record in ``context.state`` (never sent)


def encode_server_message(message: ServerMessage, sampled: list[int] | None = None) -> RecordDict:
    """A fresh RecordDict for one node (records are never shared between messages);
    ``sampled``: the client indices that train this round, when not all do."""
    content = RecordDict({WEIGHTS: encode_tensors(message.weights)})
    meta = ConfigRecord({"round": message.round})
    if sampled is not None:
        meta["sampled"] = list(sampled)
    _put_prototypes(content, meta, message.prototypes)
    content[META] = meta
    return content


def decode_server_message(content: RecordDict, expected: Expected) -> ServerMessage:
    """The server's message, checked against the client's own model and task."""
    meta = meta_record(content, "server message")
    round_index = read_int(meta, "round", "server message", minimum=1)
    return ServerMessage(
        round=round_index,
        weights=read_weights(content, expected, "server message"),
        prototypes=_prototypes(content, meta, expected, "server message"),
    )


def sampled_clients(content: RecordDict) -> list[int] | None:
    """The round's drawn client indices from a server message (None: every client)."""
    meta = content.config_records.get(META)
    if meta is None or "sampled" not in meta:
        return None
    drawn = meta["sampled"]
    values = drawn if isinstance(drawn, list) else [drawn]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise PayloadError(
            f"server message: meta['sampled'] must list client indices; got {drawn!r}."
        )
    return [int(v) for v in values]


def skipped_reply(client_index: int) -> RecordDict:
    """A node's answer when its client was not drawn this round: no training, no update."""
    return RecordDict({META: ConfigRecord({"skipped": True, "client_index": client_index})})


def is_skipped(content: RecordDict) -> bool:
    meta = content.config_records.get(META)
    return meta is not None and meta.get("skipped") is True


def encode_validation_counts(
    client_index: int, domain: str, correct: int, count: int
) -> RecordDict:
    """A node's answer to an ``evaluate`` message: its client's validation counts."""
    meta = ConfigRecord({"client_index": client_index, "domain": domain})
    meta["correct"], meta["count"] = correct, count
    return RecordDict({META: meta})


def decode_validation_counts(content: RecordDict) -> tuple[int, str, int, int]:
    """(client index, domain, correct, count) from a node's ``evaluate`` answer, checked."""
    meta = meta_record(content, "validation counts")
    index = read_int(meta, "client_index", "validation counts", minimum=0)
    count = read_int(meta, "count", "validation counts", minimum=0)
    correct = read_int(meta, "correct", "validation counts", minimum=0)
    domain = meta.get("domain")
    if not isinstance(domain, str) or not domain:
        raise PayloadError(f"validation counts: 'domain' must be a name; got {domain!r}.")
    if correct > count:
        raise PayloadError(f"validation counts: {correct} correct of {count} samples.")
    return index, domain, correct, count


def encode_client_update(update: ClientUpdate, client_index: int) -> RecordDict:
    content = RecordDict({WEIGHTS: encode_tensors(update.weights)})
    meta = ConfigRecord(
        {
            "client_id": update.client_id,
            "client_index": client_index,
            "num_samples": update.num_samples,
        }
    )
    _put_prototypes(content, meta, update.prototypes)
    content[META] = meta
    content[METRICS] = MetricRecord({key: float(value) for key, value in update.metrics.items()})
    return content


def decode_client_update(
    content: RecordDict, expected: Expected, sender: str = "client"
) -> tuple[ClientUpdate, int]:
    """A client's update and its index in the federation, checked against the global model."""
    update, index, problem = screen_client_update(content, expected, sender)
    if problem is not None:
        raise PayloadError(problem)
    return update, index


def screen_client_update(
    content: RecordDict, expected: Expected, sender: str = "client"
) -> tuple[ClientUpdate, int, str | None]:
    """Like :func:`decode_client_update`, but as the simulator screens updates: malformed
    prototypes are dropped (the third element says why) while the weights still count; any
    other fault raises :class:`PayloadError`."""
    meta = meta_record(content, sender)
    client_id = meta.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise PayloadError(
            f"{sender}: meta['client_id'] must be a non-empty string; got {client_id!r}."
        )
    where = f"{sender} (client {client_id!r})"
    index = read_int(meta, "client_index", where, minimum=0)
    num_samples = read_int(meta, "num_samples", where, minimum=1)
    weights = read_weights(content, expected, where)
    metrics = read_metrics(content, where)
    try:
        prototypes, problem = _prototypes(content, meta, expected, where), None
    except PayloadError as err:
        prototypes, problem = None, str(err)
    update = ClientUpdate(client_id, num_samples, weights, prototypes, metrics)
    return update, index, problem


def encode_tensors(tensors: StateDict) -> ArrayRecord:
    """Named tensors as an ArrayRecord (numpy ``.npy`` bytes, never pickled)."""
    return ArrayRecord({key: Array(value.detach().cpu().numpy()) for key, value in tensors.items()})


def decode_tensors(
    record: ArrayRecord, where: str, device: torch.device | str = "cpu"
) -> StateDict:
    """Every array of ``record`` as a tensor; unreadable or non-numeric arrays are refused."""
    return {key: to_tensor(array, f"{where}[{key!r}]").to(device) for key, array in record.items()}


def store_client_state(state: RecordDict, tensors: StateDict) -> None:
    """Keep a client's private state in ``context.state`` (it never leaves the node)."""
    if tensors:
        state[CLIENT_STATE] = encode_tensors(tensors)


def load_client_state(state: RecordDict, device: torch.device | str = "cpu") -> StateDict:
    record = state.array_records.get(CLIENT_STATE)
    return decode_tensors(record, "context.state", device) if record is not None else {}


# ---- prototypes ---------------------------------------------------------------------------


def _put_prototypes(content: RecordDict, meta: ConfigRecord, prototypes: Prototypes | None) -> None:
    if prototypes is None:
        return
    vectors, support, domains = ArrayRecord(), ConfigRecord(), ConfigRecord()
    for cls in torch.unique(prototypes.labels).tolist():  # sorted: the order is kept exactly
        rows = prototypes.labels == cls
        vectors[str(cls)] = Array(prototypes.vectors[rows].detach().cpu().numpy())  # [k, D]
        support[str(cls)] = [int(n) for n in prototypes.support[rows].tolist()]
        if prototypes.domains is not None:
            domains[str(cls)] = [int(n) for n in prototypes.domains[rows].tolist()]
    content[PROTOTYPES], content[SUPPORT] = vectors, support
    if prototypes.domains is not None:
        content[DOMAINS] = domains
    meta["prototype_dim"] = prototypes.dim


def _prototypes(
    content: RecordDict, meta: ConfigRecord, expected: Expected, where: str
) -> Prototypes | None:
    vectors = content.array_records.get(PROTOTYPES)
    if vectors is None:
        return None
    name = f"{where}: prototypes"
    support = content.config_records.get(SUPPORT)
    if support is None:
        raise PayloadError(f"{name}: the {SUPPORT!r} record is missing.")
    dim = read_int(meta, "prototype_dim", where, minimum=1)
    if dim != expected.feature_dim:
        raise PayloadError(
            f"{name}: feature size {dim} does not match the model's {expected.feature_dim}."
        )
    classes = sorted(_class_id(key, expected.num_classes, name) for key in vectors)
    supported = sorted(_class_id(key, expected.num_classes, name) for key in support)
    if classes != supported:
        raise PayloadError(
            f"{name}: classes with vectors {classes} differ from classes with support {supported}."
        )
    tags = content.config_records.get(DOMAINS)
    parts = [
        _class_prototypes(str(cls), vectors[str(cls)], support[str(cls)], expected, name)
        for cls in classes
    ]
    if tags is not None:
        parts = [
            _tagged(part, tags.get(str(cls)), name)
            for part, cls in zip(parts, classes, strict=True)
        ]
    if not parts:
        return Prototypes.empty(dim).to(expected.device)
    merged = Prototypes.concat(parts).validate(expected.num_classes, dim, name)
    return merged.to(expected.device)


def _tagged(part: Prototypes, tags: Any, name: str) -> Prototypes:
    """``part`` with its domain tags, checked: one non-negative integer per prototype."""
    counts = tags if isinstance(tags, list) else [tags]
    if len(counts) != len(part) or not all(is_int(n) and n >= 0 for n in counts):
        raise PayloadError(
            f"{name}: expected {len(part)} non-negative integer domain tags for class "
            f"{int(part.labels[0])}; got {preview(counts)}."
        )
    return Prototypes(
        part.vectors, part.labels, part.support, torch.tensor(counts, dtype=torch.int64)
    )


def _class_id(key: str, num_classes: int, name: str) -> int:
    if not key.isdecimal() or key != str(int(key)) or not 0 <= int(key) < num_classes:
        raise PayloadError(
            f"{name}: key {key!r} is not a known class; expected a class id in "
            f"0..{num_classes - 1} written in decimal."
        )
    return int(key)


def _class_prototypes(
    key: str, array: Array, support: Any, expected: Expected, name: str
) -> Prototypes:
    where = f"{name}[{key!r}]"
    vectors = to_tensor(array, where)
    if (
        vectors.dtype != expected.prototype_dtype
        or vectors.ndim != 2
        or vectors.shape[1] != expected.feature_dim
    ):
        raise PayloadError(
            f"{where}: expected a {str(expected.prototype_dtype).removeprefix('torch.')} "
            f"[k, {expected.feature_dim}] array; got "
            f"{vectors.dtype} {tuple(vectors.shape)}."
        )
    if vectors.shape[0] == 0:
        raise PayloadError(f"{where}: a class entry must hold at least one prototype; got none.")
    counts = support if isinstance(support, list) else [support]
    if len(counts) != vectors.shape[0] or not all(is_int(n) and n >= 0 for n in counts):
        raise PayloadError(
            f"{where}: expected {vectors.shape[0]} non-negative integer support counts; got "
            f"{preview(counts)}."
        )
    k = vectors.shape[0]
    labels = torch.full((k,), int(key), dtype=torch.int64)
    return Prototypes(vectors, labels, torch.tensor(counts, dtype=torch.int64))
