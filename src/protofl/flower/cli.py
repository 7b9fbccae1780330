"""``protofl flower app DIR`` (a Flower app folder) and ``protofl flower gate`` (the Fleet gate).

Wired into ``protofl`` through :func:`add_flower_commands`; also runs as
``python -m protofl.flower app DIR``. Building the parser imports no flwr (writing the folder
does not need it), so the main CLI stays free of it; ``gate`` imports it when it runs.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from typing import Any

from protofl.config.arguments import add_settings
from protofl.errors import ProtoflError

SETTINGS_HELP = (
    "any protofl setting as with `protofl run --set` (--set rounds=2 --set fpl.temperature=0.1)"
    ", or a server rule: flower.min_clients, flower.num_nodes, flower.node_timeout, "
    "flower.round_timeout (repeatable)"
)


def add_flower_commands(commands: Any) -> argparse.ArgumentParser:
    """Add ``flower`` (with its ``app`` subcommand) to the CLI's subparsers."""
    flower = commands.add_parser("flower", help="run protofl on Flower (protofl[flower])")
    actions = flower.add_subparsers(dest="flower_command", required=True)
    app = actions.add_parser(
        "app", help="write a Flower app folder (pyproject.toml) for `flwr run`"
    )
    app.add_argument("folder", help="the folder to write pyproject.toml into")
    app.add_argument("--algorithm", "-a", help="algorithm name (default: fpl)")
    app.add_argument("--seed", type=int, help="the one seed everything derives from")
    app.add_argument("--out", help="the server's output directory (made absolute)")
    add_settings(app, SETTINGS_HELP, progress=False)  # --data-dir: the files on every node
    app.add_argument("--overwrite", action="store_true", help="replace an existing pyproject.toml")
    add_gate_command(actions)
    flower.set_defaults(handler=run_flower_command)
    return flower


def add_gate_command(actions: Any) -> None:
    """``flower gate``: the reverse proxy that exposes only the SuperLink's Fleet API."""
    gate = actions.add_parser(
        "gate",
        help="expose only a loopback SuperLink's Fleet API (SuperNode calls) on an address",
        description="Forward SuperNode (Fleet API) calls to a SuperLink bound to 127.0.0.1 and "
        "refuse every Control and Runtime call (docs/flower.md, section 3).",
    )
    gate.add_argument("--listen", required=True, help="HOST:PORT the SuperNodes connect to")
    gate.add_argument("--superlink", required=True, help="the SuperLink's HOST:PORT (loopback)")
    gate.add_argument("--ssl-certfile", help="TLS certificate the SuperNodes check (PEM)")
    gate.add_argument("--ssl-keyfile", help="its private key (PEM)")
    gate.add_argument(
        "--superlink-ca", help="CA certificate to check the SuperLink's TLS certificate with"
    )
    gate.add_argument(
        "--insecure",
        action="store_true",
        help="serve plain HTTP to the SuperNodes (loopback trials only)",
    )
    check = actions.add_parser(
        "check-node",
        help="check a SuperNode's key and SuperLink address before starting it",
        description="Take the arguments you give flower-supernode and report what Flower "
        "1.41 would accept silently: a key other accounts can read, --insecure against a TLS "
        "SuperLink (retries forever), an address that also serves the Control API.",
    )
    check.add_argument("--superlink", required=True, help="HOST:PORT, as for flower-supernode")
    check.add_argument("--root-certificates", help="the CA certificate (ca.crt)")
    check.add_argument("--insecure", action="store_true", help="as for flower-supernode")
    check.add_argument("--auth-supernode-private-key", help="the node's private key")


def run_flower_command(args: argparse.Namespace) -> int:
    """Handle ``protofl flower ...``; returns the exit status."""
    if args.flower_command == "gate":
        return run_gate_command(args)
    if args.flower_command == "check-node":
        return run_check_node_command(args)
    from protofl.config import parse_assignments
    from protofl.config.arguments import config_from_args
    from protofl.flower.project import write_app
    from protofl.flower.settings import FLOWER_SECTION, parse_flower_settings

    try:
        ours = [item for item in args.set if item.startswith(f"{FLOWER_SECTION}.")]
        rest = copy.copy(args)
        rest.set = [item for item in args.set if item not in ours]
        config = config_from_args(rest)
        settings = parse_flower_settings(parse_assignments(ours).get(FLOWER_SECTION, {}))
        path = write_app(args.folder, config, settings, overwrite=args.overwrite)
    except ProtoflError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}; run it with: flwr run {path.parent} <federation> --stream")
    return 0


def run_gate_command(args: argparse.Namespace) -> int:
    """Run the Fleet gate until interrupted; 2 on a bad argument."""
    import logging

    from protofl.flower.gate import serve_gate

    # protofl's lines (each refused call) at INFO; Flower's and httpx's chatter stays out.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("protofl").setLevel(logging.INFO)
    if not args.insecure and not (args.ssl_certfile and args.ssl_keyfile):
        print(
            "error: the gate faces the network: give --ssl-certfile and --ssl-keyfile "
            "(the SuperLink's own certificate will do), or --insecure on loopback",
            file=sys.stderr,
        )
        return 2
    try:
        serve_gate(
            args.listen,
            args.superlink,
            ssl_certfile=None if args.insecure else args.ssl_certfile,
            ssl_keyfile=None if args.insecure else args.ssl_keyfile,
            superlink_ca=args.superlink_ca,
        )
    except ProtoflError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def run_check_node_command(args: argparse.Namespace) -> int:
    """Print one line per check; 1 when any fails, 2 on a bad argument."""
    from protofl.flower.preflight import check_node

    try:
        findings = check_node(
            args.superlink,
            root_certificates=args.root_certificates,
            insecure=args.insecure,
            private_key=args.auth_supernode_private_key,
        )
    except ProtoflError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for finding in findings:
        print(f"{'ok' if finding.ok else 'PROBLEM'}: {finding.message}")
    return 0 if all(finding.ok for finding in findings) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m protofl.flower")
    add_flower_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["flower", *(sys.argv[1:] if argv is None else argv)])
    return run_flower_command(args)
