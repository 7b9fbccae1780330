"""The Flower codec: payloads <-> records, exact round trips, and every rejection's message."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

flwr = pytest.importorskip("flwr", reason="Flower is optional: pip install protofl[flower]")

from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict  # noqa: E402
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto  # noqa: E402

from protofl.core.payloads import ClientUpdate, Prototypes, ServerMessage  # noqa: E402
from protofl.errors import PayloadError  # noqa: E402
from protofl.flower.codec import (  # noqa: E402
    decode_client_update,
    decode_server_message,
    encode_client_update,
    encode_server_message,
    load_client_state,
    store_client_state,
)
from protofl.flower.fields import Expected  # noqa: E402

DIM, CLASSES = 4, 6


def weights() -> dict[str, torch.Tensor]:
    return {
        "conv.weight": torch.randn(3, 2, 3, 3),
        "bn.running_mean": torch.randn(3),
        "bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
    }


def ragged() -> Prototypes:
    """Class 0 has three prototypes, class 2 one, class 5 two; sorted by class as produced."""
    labels = torch.tensor([0, 0, 0, 2, 5, 5])
    return Prototypes(torch.randn(6, DIM), labels, torch.tensor([3, 1, 2, 1, 5, 4]))


EXPECTED = Expected.like(weights(), CLASSES, DIM)


def wire(content: RecordDict) -> RecordDict:
    """Through Flower's protobuf serialisation, as over the network."""
    return recorddict_from_proto(recorddict_to_proto(content))


def update(prototypes: Prototypes | None = None) -> ClientUpdate:
    return ClientUpdate("green-1", 48, weights(), prototypes, {"ce": 1.5, "accuracy": 0.25})


def assert_same_prototypes(got: Prototypes | None, want: Prototypes) -> None:
    assert got is not None
    assert torch.equal(got.vectors, want.vectors)
    assert torch.equal(got.labels, want.labels)
    assert torch.equal(got.support, want.support)
    assert got.labels.dtype == got.support.dtype == torch.int64


def test_server_message_round_trip_is_exact() -> None:
    sent = ServerMessage(3, weights(), ragged())
    got = decode_server_message(wire(encode_server_message(sent)), EXPECTED)
    assert got.round == 3
    assert got.weights.keys() == sent.weights.keys()
    for key, value in sent.weights.items():
        assert torch.equal(got.weights[key], value) and got.weights[key].dtype == value.dtype
    assert got.weights["bn.num_batches_tracked"].dtype == torch.int64  # stays an integer
    assert sent.prototypes is not None
    assert_same_prototypes(got.prototypes, sent.prototypes)


def test_prototypes_travel_as_one_k_by_d_array_per_class_never_pickled() -> None:
    sent = ragged()
    content = encode_server_message(ServerMessage(1, weights(), sent))
    record = content.array_records["prototypes"]
    assert sorted(record) == ["0", "2", "5"]
    assert [tuple(record[k].shape) for k in ("0", "2", "5")] == [(3, DIM), (1, DIM), (2, DIM)]
    assert all(record[k].dtype == "float32" for k in record)
    assert content.config_records["prototype_support"]["0"] == [3, 1, 2]
    for config in content.config_records.values():
        assert not any(isinstance(v, bytes) for v in config.values())


def test_client_update_round_trip_with_metrics_and_index() -> None:
    sent = update(ragged())
    got, index = decode_client_update(wire(encode_client_update(sent, client_index=3)), EXPECTED)
    assert index == 3
    assert (got.client_id, got.num_samples) == ("green-1", 48)
    assert got.metrics == {"ce": 1.5, "accuracy": 0.25}
    assert sent.prototypes is not None
    assert_same_prototypes(got.prototypes, sent.prototypes)
    assert got.weights["bn.num_batches_tracked"].dtype == torch.int64


def test_absent_and_empty_prototypes_stay_distinct() -> None:
    none, _ = decode_client_update(wire(encode_client_update(update(None), 0)), EXPECTED)
    assert none.prototypes is None
    empty, _ = decode_client_update(
        wire(encode_client_update(update(Prototypes.empty(DIM)), 0)), EXPECTED
    )
    assert empty.prototypes is not None and len(empty.prototypes) == 0
    assert empty.prototypes.dim == DIM


def test_client_state_stays_in_context_state() -> None:
    state = RecordDict()
    store_client_state(state, {"previous_model.w": torch.arange(3.0)})
    assert torch.equal(load_client_state(state)["previous_model.w"], torch.arange(3.0))
    store_client_state(RecordDict(), {})  # nothing to keep: nothing stored
    assert load_client_state(RecordDict()) == {}


# ---- rejections: every bad field names itself -------------------------------------------------

Mutation = Callable[[RecordDict], None]


def _array_with(values: np.ndarray) -> Array:
    return Array(values)


def _pickled_object_array() -> Array:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    return Array(dtype="object", shape=(1,), stype="numpy.ndarray", data=buffer.getvalue())


def _set_weight(key: str, values: np.ndarray) -> Mutation:
    return lambda c: c.array_records["weights"].__setitem__(key, Array(values))


def _set_meta(key: str, value: Any) -> Mutation:  # Any: the tests store wrong types
    return lambda c: c.config_records["meta"].__setitem__(key, value)


def _set_proto(key: str, value: Array) -> Mutation:
    return lambda c: c.array_records["prototypes"].__setitem__(key, value)


def _set_support(key: str, value: Any) -> Mutation:
    return lambda c: c.config_records["prototype_support"].__setitem__(key, value)


def _delete(name: str) -> Mutation:
    return lambda c: c.__delitem__(name)


def _delete_weight(key: str) -> Mutation:
    return lambda c: c.array_records["weights"].__delitem__(key)


nan_conv = np.full((3, 2, 3, 3), np.nan, dtype=np.float32)

REJECTIONS: dict[str, tuple[Mutation, str]] = {
    "no weights": (_delete("weights"), "the 'weights' record is missing"),
    "missing weight": (_delete_weight("bn.running_mean"), "missing ['bn.running_mean']"),
    "extra weight": (_set_weight("head.bias", np.zeros(2, np.float32)), "unexpected ['head.bias']"),
    "wrong shape": (
        _set_weight("bn.running_mean", np.zeros(4, np.float32)),
        "weights['bn.running_mean']: expected torch.float32 [3]; got torch.float32 [4]",
    ),
    "int buffer sent as float": (
        _set_weight("bn.num_batches_tracked", np.array(7.0)),
        "weights['bn.num_batches_tracked']: expected torch.int64 []; got torch.float64 []",
    ),
    "NaN weights": (_set_weight("conv.weight", nan_conv), "contains non-finite values"),
    "corrupt bytes": (
        lambda c: c.array_records["weights"].__setitem__(
            "bn.running_mean", Array("float32", (3,), "numpy.ndarray", b"junk")
        ),
        "cannot read the array",
    ),
    "pickled object array": (
        lambda c: c.array_records["weights"].__setitem__(
            "bn.running_mean", _pickled_object_array()
        ),
        "cannot read the array",
    ),
    "declared shape differs from data": (
        lambda c: c.array_records["weights"].__setitem__(
            "bn.running_mean",
            Array("float32", (9,), "numpy.ndarray", Array(np.zeros(3, np.float32)).data),
        ),
        "declared shape (9,)",
    ),
    "no meta": (_delete("meta"), "the 'meta' record is missing"),
    "no client id": (_set_meta("client_id", ""), "meta['client_id'] must be a non-empty string"),
    "zero samples": (_set_meta("num_samples", 0), "meta['num_samples'] must be an integer >= 1"),
    "negative index": (_set_meta("client_index", -1), "meta['client_index'] must be an integer"),
    "NaN metric": (
        lambda c: c.metric_records["metrics"].__setitem__("ce", float("nan")),
        "metrics['ce'] must be a finite number",
    ),
    "unknown class": (
        _set_proto("6", _array_with(np.zeros((1, DIM), np.float32))),
        "key '6' is not a known class; expected a class id in 0..5",
    ),
    "non-numeric class key": (
        _set_proto("cat", _array_with(np.zeros((1, DIM), np.float32))),
        "key 'cat' is not a known class",
    ),
    "class key with a leading zero": (
        _set_proto("02", _array_with(np.zeros((1, DIM), np.float32))),
        "key '02' is not a known class",
    ),
    "prototype of wrong size": (
        _set_proto("2", _array_with(np.zeros((1, DIM + 1), np.float32))),
        "prototypes['2']: expected a float32 [k, 4] array; got torch.float32 (1, 5)",
    ),
    "prototype as float64": (
        _set_proto("2", _array_with(np.zeros((1, DIM), np.float64))),
        "expected a float32 [k, 4] array; got torch.float64",
    ),
    "NaN prototype": (
        _set_proto("2", _array_with(np.full((1, DIM), np.nan, np.float32))),
        "contain NaN or inf",
    ),
    "empty class entry": (
        _set_proto("2", _array_with(np.zeros((0, DIM), np.float32))),
        "must hold at least one prototype",
    ),
    "support count mismatch": (
        _set_support("0", [3, 1]),
        "expected 3 non-negative integer support",
    ),
    "negative support": (_set_support("2", [-1]), "non-negative integer support counts"),
    "classes differ": (_set_support("3", [1]), "differ from classes with support"),
    "no support record": (_delete("prototype_support"), "'prototype_support' record is missing"),
    "wrong prototype dim": (
        _set_meta("prototype_dim", DIM + 1),
        "feature size 5 does not match the model's 4",
    ),
}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_bad_client_update_is_rejected_with_a_clear_message(case: str) -> None:
    mutate, message = REJECTIONS[case]
    content = wire(encode_client_update(update(ragged()), 1))
    mutate(content)
    with pytest.raises(PayloadError) as caught:
        decode_client_update(content, EXPECTED, "node 42")
    assert message in str(caught.value)
    assert str(caught.value).startswith("node 42")
    assert isinstance(caught.value, ValueError)  # catchable as the built-in too


def test_bad_server_message_is_rejected_on_the_client() -> None:
    content = encode_server_message(ServerMessage(1, weights(), ragged()))
    content.config_records["meta"]["round"] = 0
    with pytest.raises(PayloadError, match=r"meta\['round'\] must be an integer >= 1"):
        decode_server_message(content, EXPECTED)
    other_model = Expected.like({"fc.weight": torch.zeros(2, 2)}, CLASSES, DIM)
    good = encode_server_message(ServerMessage(1, weights()))
    with pytest.raises(PayloadError, match="server and clients must build the same model"):
        decode_server_message(good, other_model)


def test_records_are_plain_flower_record_types() -> None:
    content = encode_client_update(update(ragged()), 0)
    assert isinstance(content["weights"], ArrayRecord)
    assert isinstance(content["prototypes"], ArrayRecord)
    assert isinstance(content["prototype_support"], ConfigRecord)
    assert isinstance(content["meta"], ConfigRecord)
    assert isinstance(content["metrics"], MetricRecord)


def test_domain_tags_travel_with_their_prototypes() -> None:
    sent = ragged()
    tagged = Prototypes(sent.vectors, sent.labels, sent.support, torch.tensor([7, 7, 9, 1, 7, 9]))
    got = decode_server_message(
        wire(encode_server_message(ServerMessage(1, weights(), tagged))), EXPECTED
    ).prototypes
    assert got is not None and got.domains is not None
    assert got.domains.tolist() == [7, 7, 9, 1, 7, 9]
    content = encode_server_message(ServerMessage(1, weights(), tagged))
    content.config_records["prototype_domains"]["0"] = [7, -1, 9]
    with pytest.raises(PayloadError, match="non-negative integer domain tags for class 0"):
        decode_server_message(wire(content), EXPECTED)
