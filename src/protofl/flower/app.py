"""The ServerApp and ClientApp a generated protofl Flower project points to.

``[tool.flwr.app.components]`` names ``protofl.flower.app:server`` and
``protofl.flower.app:client``: the benchmark named in the run config, one client per
SuperNode (node config ``partition-id``).
"""

from __future__ import annotations

from protofl.flower.client import client_app
from protofl.flower.server import server_app

server = server_app()
client = client_app()
