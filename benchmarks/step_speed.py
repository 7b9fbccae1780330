"""How much FPL and the federation machinery cost beside plain training, measured side by side.

Two ratios, each from interleaved repetitions in one process (medians; this machine is
shared and noisy, so only ratios from the same run are compared):

* FPL local step / plain cross-entropy step: same model, batch and optimiser; the FPL step
  adds CPCL + UPCR against realistic cluster prototypes and accumulates local prototypes.
* Simulated round / bare loop: ``Simulation.step`` (payloads, state copies, aggregation,
  FINCH, evaluation) against a hand-written loop over the same clients, batches and loss,
  followed by the same weight average and evaluation.

    python benchmarks/step_speed.py [--model resnet10] [--repeats 15] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from protofl.algorithms import AlgorithmContext, build_algorithm
from protofl.algorithms.losses import cluster_contrastive_loss, unbiased_consistency_loss
from protofl.algorithms.prototypes import PrototypeAccumulator, class_means
from protofl.config import EVAL_BATCH_SIZE
from protofl.core.payloads import Prototypes
from protofl.core.seeding import derive_seed, torch_generator
from protofl.data.transforms import ImagePipeline
from protofl.engine.data import ClientData, Federation, TensorSet, TestSet
from protofl.engine.evaluate import evaluate
from protofl.engine.local import LocalSettings
from protofl.engine.precision import Precision, resolve_precision
from protofl.federation.aggregation import sample_weights, weighted_average
from protofl.models import FeatureModel, build_model, check_feature_model
from protofl.models.base import feature_model
from protofl.sim.simulator import Simulation

CLASSES = 10


def realistic_prototypes(dim: int, seed: int = 0) -> Prototypes:
    """31 non-negative cluster prototypes, 2-5 per class, as FINCH gave for 20 clients."""
    generator = torch.Generator().manual_seed(seed)
    counts = [2, 3, 4, 5, 3, 2, 3, 4, 3, 2]
    labels = torch.tensor([c for c, n in enumerate(counts) for _ in range(n)])
    vectors = torch.rand(len(labels), dim, generator=generator)
    return Prototypes(vectors, labels, torch.ones(len(labels), dtype=torch.int64))


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def interleaved(
    first: Callable[[], object], second: Callable[[], object], repeats: int
) -> tuple[list[float], list[float]]:
    first(), second()  # warm-up
    a, b = [], []
    for _ in range(repeats):
        a.append(timed(first))
        b.append(timed(second))
    return a, b


def split_model(model: nn.Module, precision: Precision) -> tuple[FeatureModel, int]:
    """``model`` through the feature/head contract, and its feature size (one checked batch)."""
    example = precision.prepare_input(torch.zeros(2, 3, 32, 32))
    return feature_model(model), check_feature_model(model, example, CLASSES)


def step_ratio(model_name: str, repeats: int, precision: Precision) -> dict[str, float]:
    torch.manual_seed(0)
    model = precision.prepare_model(build_model(model_name, CLASSES))
    net, feature_dim = split_model(model, precision)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-5)
    pipeline = ImagePipeline()
    generator = torch.Generator().manual_seed(0)
    raw = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, CLASSES, (64,), generator=generator)
    clusters = realistic_prototypes(feature_dim)
    unbiased, has = class_means(clusters, CLASSES)

    def plain() -> None:
        inputs = precision.prepare_input(pipeline.train(raw, generator))
        with precision.autocast():
            logits = net.head(net.features(inputs))
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    accumulator = PrototypeAccumulator(CLASSES, feature_dim)

    def fpl() -> None:
        inputs = precision.prepare_input(pipeline.train(raw, generator))
        with precision.autocast():
            features = net.features(inputs)
            logits = net.head(features)
        features = features.float()
        loss = F.cross_entropy(logits.float(), labels)
        loss = loss + cluster_contrastive_loss(
            features, labels, clusters.vectors, clusters.labels, 0.02
        )
        loss = loss + unbiased_consistency_loss(features, labels, unbiased, has)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        accumulator.add(features, labels)

    fpl_times, plain_times = interleaved(fpl, plain, repeats)
    fpl_ms, plain_ms = statistics.median(fpl_times) * 1e3, statistics.median(plain_times) * 1e3
    return {"fpl_step_ms": fpl_ms, "ce_step_ms": plain_ms, "ratio": fpl_ms / plain_ms}


def small_federation(clients: int, per_client: int, seed: int = 0) -> Federation:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randint(
        0, 256, (clients * per_client, 3, 32, 32), dtype=torch.uint8, generator=generator
    )
    labels = torch.arange(clients * per_client) % CLASSES
    source, pipeline = TensorSet(inputs, labels), ImagePipeline()
    members = [
        ClientData(
            f"c{i}",
            f"d{i % 2}",
            source,
            torch.arange(i * per_client, (i + 1) * per_client),
            pipeline,
        )
        for i in range(clients)
    ]
    tests = tuple(
        TestSet(f"d{i}", TensorSet(inputs[:256], labels[:256]), pipeline) for i in range(2)
    )
    return Federation(tuple(members), tests, CLASSES)


def bare_round(
    model: nn.Module,
    worker: nn.Module,
    federation: Federation,
    local: LocalSettings,
    clusters: Prototypes,
    seed: int,
    round_index: int,
    precision: Precision,
) -> None:
    """The same work without the federation machinery: one loop, one average, one eval."""
    start = copy.deepcopy(model.state_dict())
    states, counts = [], []
    unbiased, has = class_means(clusters, CLASSES)
    net = feature_model(worker)
    for index, client in enumerate(federation.clients):
        worker.load_state_dict(start)
        optimizer = torch.optim.SGD(
            worker.parameters(),
            lr=local.lr,
            momentum=local.momentum,
            weight_decay=local.weight_decay,
        )
        generator = torch_generator(derive_seed(seed, "client", index, "round", round_index))
        for _ in range(local.epochs):
            order = client.indices[torch.randperm(len(client), generator=generator)]
            for batch in order.split(local.batch_size):
                inputs = client.transform.train(client.source.inputs[batch], generator)
                inputs = precision.prepare_input(inputs)
                labels = client.source.labels[batch]
                with precision.autocast():
                    features = net.features(inputs)
                    logits = net.head(features)
                features = features.float()
                loss = F.cross_entropy(logits.float(), labels)
                loss = loss + cluster_contrastive_loss(
                    features, labels, clusters.vectors, clusters.labels, 0.02
                )
                loss = loss + unbiased_consistency_loss(features, labels, unbiased, has)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        states.append({k: v.detach().clone() for k, v in worker.state_dict().items()})
        counts.append(len(client))
    model.load_state_dict(weighted_average(states, sample_weights(counts)))
    evaluate(model, federation.test_sets, EVAL_BATCH_SIZE, precision)  # as the simulator


def round_ratio(
    model_name: str, repeats: int, clients: int, per_client: int, precision: Precision
) -> dict[str, float]:
    torch.manual_seed(0)
    model = precision.prepare_model(build_model(model_name, CLASSES))
    _, feature_dim = split_model(model, precision)
    federation = small_federation(clients, per_client)
    local = LocalSettings(epochs=1, batch_size=64)
    context = AlgorithmContext(CLASSES, feature_dim, rounds=100)
    algorithm = build_algorithm("fpl", {}, context)
    simulation = Simulation.start(algorithm, model, federation, local, precision=precision)
    simulation.step(100)  # round 1 collects prototypes; later rounds use them
    clusters = simulation.state.prototypes or realistic_prototypes(feature_dim)
    bare_model, worker = copy.deepcopy(model), copy.deepcopy(model)

    def simulated() -> None:
        simulation.step(10**6)

    def bare() -> None:
        bare_round(bare_model, worker, federation, local, clusters, 0, 2, precision)

    sim_times, bare_times = interleaved(simulated, bare, repeats)
    sim_s, bare_s = statistics.median(sim_times), statistics.median(bare_times)
    return {
        "round_s": sim_s,
        "bare_s": bare_s,
        "ratio": sim_s / bare_s,
        "clients": clients,
        "samples_per_client": per_client,
    }


def machine() -> dict[str, object]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "commit": commit,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet10")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--round-repeats", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--samples-per-client", type=int, default=128)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    precision = resolve_precision(args.precision, torch.device("cpu"))
    step = step_ratio(args.model, args.repeats, precision)
    round_ = round_ratio(
        args.model, args.round_repeats, args.clients, args.samples_per_client, precision
    )
    threads = torch.get_num_threads()
    print(f"model {args.model}, batch 64, 32x32, {threads} threads, {precision.name}")
    print(f"{'measure':<34}{'protofl':>12}{'baseline':>12}{'ratio':>8}")
    rows = [
        ("FPL step / CE step (ms)", step["fpl_step_ms"], step["ce_step_ms"], step["ratio"]),
        ("simulated round / bare loop (s)", round_["round_s"], round_["bare_s"], round_["ratio"]),
    ]
    for name, ours, baseline, ratio in rows:
        print(f"{name:<34}{ours:>12.2f}{baseline:>12.2f}{ratio:>8.3f}")
    if args.json:
        payload = {
            "model": args.model,
            "precision": precision.name,
            "step": step,
            "round": round_,
            "machine": machine(),
            "repeats": {"step": args.repeats, "round": args.round_repeats},
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
