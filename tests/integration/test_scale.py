"""200 clients on one machine with bounded memory: no model or dataset copy per client."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, resource, sys
from protofl import RunConfig, run
per_domain = int(sys.argv[1])
domains = ("handwritten", "synthetic", "strokes", "segments")
config = RunConfig(model="resnet10", rounds=1, local_epochs=1, client_fraction=0.004,
                   clients_per_domain={d: per_domain for d in domains}, precision="fp32")
result = run(config, write=False)
print(json.dumps({"clients": len(result.history[-1].clients),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def peak(per_domain: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(per_domain)], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_200_clients_fit_in_bounded_memory() -> None:
    small, large = peak(5), peak(50)
    assert (small["clients"], large["clients"]) == (20, 200)
    # A ResNet-10 state is 19.6 MB: a copy per extra client would add 3.5 GB here.
    growth = large["peak_mb"] - small["peak_mb"]
    assert growth < 300, f"peak RSS grew by {growth:.0f} MB from 20 to 200 clients"
