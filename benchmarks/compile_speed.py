"""Does ``--set compile=inductor`` make the paper protocol's local step faster on this CPU?

One local SGD step of ResNet-10 at Office-Caltech's size (batch 64, 32x32 RGB, 10 classes,
cross-entropy on the head of the compiled or eager forward pass), in fp32 and in bf16, eager
against ``torch.compile(backend="inductor")``, interleaved in one process: the first compiled
steps (compile time) are reported apart, then the median of the measured steps. The same
inputs go through both from the same weights, and the first step's loss and logits are
compared (they must agree within the precision's tolerance for compile to be usable).

    python benchmarks/compile_speed.py --repeats 20 --json benchmarks/results/compile_speed.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from protofl.engine.local import make_forward
from protofl.engine.precision import resolve_precision
from protofl.models import build_model


def step_timer(backend: str, precision_name: str, repeats: int, seed: int = 0) -> dict[str, Any]:
    torch.manual_seed(seed)
    device = torch.device("cpu")
    precision = resolve_precision(precision_name, device)
    model = precision.prepare_model(build_model("resnet10", 10))
    model.train()
    forward = make_forward(model, backend)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-5)
    generator = torch.Generator().manual_seed(seed)
    inputs = precision.prepare_input(torch.randn(64, 3, 32, 32, generator=generator))
    labels = torch.randint(0, 10, (64,), generator=generator)

    def step() -> tuple[float, torch.Tensor]:
        with precision.autocast():
            _, logits = forward(inputs)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss), logits.detach().float()

    started = time.perf_counter()
    first_loss, first_logits = step()
    warmup = [time.perf_counter() - started]
    for _ in range(2):  # recompilations settle in the first steps
        started = time.perf_counter()
        step()
        warmup.append(time.perf_counter() - started)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return {
        "first_loss": first_loss,
        "first_logits": first_logits,
        "warmup_seconds": warmup,
        "median_step_seconds": statistics.median(times),
        "steps": times,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for precision in ("fp32", "bf16"):
        eager = step_timer("", precision, args.repeats)
        compiled = step_timer("inductor", precision, args.repeats)
        gap = float((eager["first_logits"] - compiled["first_logits"]).abs().max())
        rows.append(
            {
                "precision": precision,
                "eager_step_s": eager["median_step_seconds"],
                "compiled_step_s": compiled["median_step_seconds"],
                "speedup": eager["median_step_seconds"] / compiled["median_step_seconds"],
                "compile_warmup_s": compiled["warmup_seconds"],
                "first_loss_eager": eager["first_loss"],
                "first_loss_compiled": compiled["first_loss"],
                "max_logit_gap": gap,
            }
        )
    from protofl.outputs.compare import describe_machine

    cpu = describe_machine()
    print(f"ResNet-10 local step, batch 64, 32x32, {args.threads} threads, {cpu}")
    print(
        f"{'precision':<9} {'eager ms':>9} {'compiled ms':>12} {'speed-up':>9} "
        f"{'compile s':>10} {'logit gap':>10}"
    )
    for row in rows:
        print(
            f"{row['precision']:<9} {1000 * row['eager_step_s']:9.1f} "
            f"{1000 * row['compiled_step_s']:12.1f} {row['speedup']:9.2f} "
            f"{row['compile_warmup_s'][0]:10.1f} {row['max_logit_gap']:10.2e}"
        )
    if args.json:
        facts = {"threads": args.threads, "cpu": cpu, "torch": torch.__version__}
        args.json.write_text(json.dumps({"facts": facts, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
