"""FPL on Flower's simulation engine, all in one process: the same algorithm code as
``protofl run``, with every client a virtual Flower SuperNode.

    python examples/flower_simulation.py [OUT_FOLDER]

Needs ``pip install 'protofl[flower]'``. A real deployment with a SuperLink and SuperNodes as
separate processes is walked through in docs/flower.md.
"""

import sys
import tempfile

from protofl import RunConfig
from protofl.flower import simulate

out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp() + "/fpl-flower"
config = RunConfig(
    rounds=2,
    local_epochs=1,
    domains=("handwritten", "synthetic"),
    clients_per_domain={"handwritten": 1, "synthetic": 1},
    client_fraction=0.2,
    threads=1,
    out=out,
)
result = simulate(config)  # writes config.json, metrics.jsonl, summary.json into out
print(result.summary["per_domain_accuracy"], "->", out)
