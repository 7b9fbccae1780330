"""How fast the global model is scored at each evaluation batch size, and whether the batch
size changes any prediction.

Every round scores the global model on every domain's test split (and, with
``holdout_domains``, on all of each held-out domain), through ``engine.evaluate.evaluate`` in
inference mode. This times that function on the same images at several batch sizes,
interleaved (medians; only ratios from one run are compared), and counts the images whose
predicted class differs from scoring all of them in one batch (inference mode scores each
image on its own, so only last-bit rounding could move one). The count comes from
``evaluate`` itself: the images are labelled with the one-batch predictions, so its
accuracy is the share of predictions that did not move.

    python benchmarks/eval_batch.py [--images 1024] [--sizes 32,64,128,256,1024] \
        [--precision auto] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

from protofl.data.transforms import ImagePipeline
from protofl.engine.data import TensorSet, TestSet
from protofl.engine.evaluate import evaluate
from protofl.engine.precision import Precision, resolve_precision
from protofl.models import build_model
from protofl.models.base import feature_model

CLASSES = 10
REFERENCE = 1024


def one_batch_predictions(
    model: nn.Module, test_set: TestSet, precision: Precision
) -> torch.Tensor:
    """The predicted class of every image, all scored in one forward pass."""
    typed = feature_model(model)
    with torch.inference_mode(), precision.autocast():
        inputs = precision.prepare_input(test_set.transform.eval(test_set.data.inputs))
        return typed.head(typed.features(inputs)).argmax(dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet10")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--sizes", default="32,64,128,256,1024")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precision", default="auto", choices=["fp32", "bf16", "auto"])
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",")} | {REFERENCE})
    precision = resolve_precision(args.precision, torch.device("cpu"))
    torch.manual_seed(0)
    model = precision.prepare_model(build_model(args.model, CLASSES)).eval()
    generator = torch.Generator().manual_seed(0)
    shape = (args.images, 3, args.image_size, args.image_size)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, CLASSES, (args.images,), generator=generator)
    test_set = TestSet("random", TensorSet(images, labels), ImagePipeline())

    reference = one_batch_predictions(model, test_set, precision)
    agreement = TestSet("random", TensorSet(images, reference), ImagePipeline())
    differing = {
        size: round(args.images * (1 - evaluate(model, [agreement], size, precision)["random"]))
        for size in sizes
    }
    times: dict[int, list[float]] = {size: [] for size in sizes}
    for size in sizes:  # warm-up
        evaluate(model, [test_set], size, precision)
    for _ in range(args.repeats):
        for size in sizes:
            started = time.perf_counter()
            evaluate(model, [test_set], size, precision)
            times[size].append(time.perf_counter() - started)
    medians = {size: statistics.median(values) for size, values in times.items()}

    threads = torch.get_num_threads()
    print(
        f"{args.model}, {args.images} images at {args.image_size} px, {precision.name}, "
        f"{threads} threads, median of {args.repeats}"
    )
    print(f"{'batch':>6}{'seconds':>10}{'images/s':>10}{'vs 1024':>9}{'moved':>7}")
    for size in sizes:
        ratio = medians[size] / medians[REFERENCE]
        rate = args.images / medians[size]
        print(f"{size:>6}{medians[size]:>10.2f}{rate:>10.0f}{ratio:>9.2f}{differing[size]:>7}")
    if args.json:
        from protofl.outputs.compare import current_commit, describe_machine

        payload = {
            "model": args.model,
            "images": args.images,
            "image_size": args.image_size,
            "precision": precision.name,
            "threads": threads,
            "repeats": args.repeats,
            "seconds": {str(size): times[size] for size in sizes},
            "median_seconds": {str(size): medians[size] for size in sizes},
            "predictions_differing_from_one_batch": {str(size): differing[size] for size in sizes},
            "machine": describe_machine(),
            "commit": current_commit(),
        }
        with open(args.json, "w") as handle:
            handle.write(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
