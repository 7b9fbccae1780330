"""What dominates an FPL round: torch.profiler's top operators, fp32 and bf16.

python benchmarks/profile_round.py --data-dir ../shared/data [--top 12] [--out FILE]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

from protofl import RunConfig
from protofl.builders import prepare


def profile_round(config: RunConfig, top: int) -> str:
    simulation, _ = prepare(config)
    simulation.step(10**6)  # round 1: no prototypes yet; profile a round that uses them
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        simulation.step(10**6)
    table: str = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    base = RunConfig(benchmark="office-caltech", data_dir=args.data_dir, local_epochs=1)
    report = []
    for precision in ("fp32", "bf16"):
        table = profile_round(replace(base, precision=precision), args.top)
        report.append(f"## FPL round, office-caltech, 1 local epoch, {precision}\n\n{table}\n")
    text = "\n".join(report)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
