"""The deployment for real use (docs/flower.md section 3): only the Fleet API faces the network.

Flower 1.41 serves its Fleet, Control and Runtime APIs on the SuperLink's one port, and the
Control API has no authentication, so section 3 binds the SuperLink to 127.0.0.1 and puts
``protofl flower gate`` on the address SuperNodes reach. Here 127.0.0.2 plays that outside
address: a registered SuperNode trains through it, and a stranger there who holds ``ca.crt``
cannot register a key, list or submit runs, unregister a node or call the Runtime API.
The first tests drive the gate in process against a stand-in SuperLink (fast, no Flower
processes); the last one starts the real processes (about a minute).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import http.client
import importlib.util
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("flwr", reason="Flower is not installed (pip install protofl[flower])")
pytest.importorskip("httpx")

import httpx

import protofl
from protofl import RunConfig
from protofl.flower.gate import REFUSAL, FleetGate, fleet_paths
from protofl.flower.project import OFFLINE_ENV as FLOWER_ENV

from flower_processes import (
    Deployment,
    free_port,
    read_metrics,
    write_tiny_app,
)

BIN = Path(sys.executable).parent
OUTSIDE = "127.0.0.2"  # the "network" address; the SuperLink itself listens on 127.0.0.1 only
# One node training one client for one round: enough to use every Fleet call once.
TINY_ONE = RunConfig(
    rounds=1,
    local_epochs=1,
    batch_size=32,
    domains=("handwritten",),
    clients_per_domain={"handwritten": 1},
    client_fraction=0.05,
    eval_batch_size=500,
    threads=1,
)


def superlink_paths() -> set[str]:
    """Every route a Flower 1.41 SuperLink serves on its port (Fleet, Control, Runtime, docs)."""
    from fastapi.routing import iter_route_contexts
    from flwr.superlink.main import create_app

    routes = iter_route_contexts(create_app().routes)
    return {context.path for context in routes if context.path is not None}


def control_and_runtime_paths() -> set[str]:
    """Every route on the SuperLink's port that a stranger must not reach."""
    return superlink_paths() - fleet_paths()


# ---- the gate alone, in process -----------------------------------------------------------------


def drive_gate(requests: list[tuple[str, str]]) -> tuple[list[httpx.Response], list[httpx.Request]]:
    """Send ``(method, path)`` requests through a FleetGate whose SuperLink is a stand-in
    that records what reaches it and answers 200 with the path it got."""
    reached: list[httpx.Request] = []

    def superlink(request: httpx.Request) -> httpx.Response:
        reached.append(request)
        return httpx.Response(200, content=b"upstream " + request.url.path.encode())

    async def go() -> list[httpx.Response]:
        gate = FleetGate("http://superlink.invalid:9091")
        gate.client = httpx.AsyncClient(transport=httpx.MockTransport(superlink))
        transport = httpx.ASGITransport(app=gate)
        async with httpx.AsyncClient(transport=transport, base_url="http://gate") as outside:
            headers = {"x-flwr-signature": "c2ln", "content-type": "application/protobuf"}
            return [
                await outside.request(method, path, content=b"\x08\x01", headers=headers)
                for method, path in requests
            ]

    return asyncio.run(go()), reached


def test_the_gate_forwards_the_fleet_routes_and_nothing_else() -> None:
    fleet = sorted(fleet_paths())
    forbidden = sorted(control_and_runtime_paths())
    assert set(fleet) <= superlink_paths()
    assert not {path for path in forbidden if path.startswith("/v1/fleet/")}
    # The routes the issue names are among the refused ones (not an empty list by accident).
    for path in ("/v1/control/register-node", "/v1/control/start-run", "/v1/runtime/acquire-task"):
        assert path in forbidden
    assert "/v1/control/unregister-node" in forbidden and "/health" in forbidden
    tricks = [
        "/v1/fleet/%2e%2e/control/list-runs",  # decodes to /v1/fleet/../control/list-runs
        "/v1/fleet/register-node/",
        "/v1/fleet/register-node%00",
        "/v1/fleet",
    ]
    requests = [("POST", path) for path in [*forbidden, *tricks]]
    requests += [("GET", fleet[0]), ("PUT", fleet[0])]
    refused, reached = drive_gate(requests)
    assert [r.status_code for r in refused] == [403] * len(requests)
    assert all(r.content == REFUSAL for r in refused)
    assert reached == []  # refused without a word to the SuperLink

    passed, reached = drive_gate([("POST", path) for path in fleet])
    assert [r.status_code for r in passed] == [200] * len(fleet)
    assert [r.url.path for r in reached] == fleet
    assert [r.content for r in passed] == [b"upstream " + p.encode() for p in fleet]
    for request in reached:  # node authentication happens upstream: its headers must arrive
        assert request.content == b"\x08\x01"
        assert request.headers["x-flwr-signature"] == "c2ln"
        assert request.url.host == "superlink.invalid"  # not the Host the caller sent


def test_an_unreachable_superlink_is_a_503_which_supernodes_retry() -> None:
    async def go() -> httpx.Response:
        gate = FleetGate(f"http://127.0.0.1:{free_port()}")  # nothing listens there
        gate.client = httpx.AsyncClient()
        transport = httpx.ASGITransport(app=gate)
        async with httpx.AsyncClient(transport=transport, base_url="http://gate") as outside:
            return await outside.post("/v1/fleet/send-node-heartbeat", content=b"")

    assert asyncio.run(go()).status_code == 503


def test_the_gate_command_refuses_to_face_the_network_without_tls(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from protofl.flower.cli import main

    assert main(["gate", "--listen", "0.0.0.0:9092", "--superlink", "127.0.0.1:9091"]) == 2
    assert "--ssl-certfile" in capsys.readouterr().err
    assert main(["gate", "--listen", "nowhere", "--superlink", "127.0.0.1:9091", "--insecure"]) == 2
    assert "expected HOST:PORT" in capsys.readouterr().err


def test_a_key_other_accounts_can_read_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from protofl.errors import ConfigError
    from protofl.flower.cli import main
    from protofl.flower.preflight import check_private_key, load_node_key

    public = write_node_key(tmp_path / "keys" / "node0")
    key = public.with_suffix("")
    load_node_key(key)  # 0600, as ssh-keygen writes it
    for mode in (0o644, 0o640, 0o604):
        key.chmod(mode)
        with pytest.raises(ConfigError, match=rf"mode 0{mode:o}.*chmod 600 {key}"):
            check_private_key(key)
    # The gate refuses to serve with such a TLS key, before binding anything.
    arguments = ["gate", "--listen", "127.0.0.1:1", "--superlink", "127.0.0.1:2"]
    assert main([*arguments, "--ssl-certfile", str(public), "--ssl-keyfile", str(key)]) == 2
    assert f"chmod 600 {key}" in capsys.readouterr().err
    public.chmod(0o600)  # past the permission check: the format is what is wrong here
    with pytest.raises(ConfigError, match="not an unencrypted OpenSSH private key"):
        load_node_key(public)  # a public key where the private one belongs


# ---- the real deployment -------------------------------------------------------------------------


def write_certificates(folder: Path) -> dict[str, Path]:
    """A CA and a server certificate for localhost, 127.0.0.1 and the outside address, as
    section 3's openssl commands make them (127.0.0.1 is where SuperExec and the gate dial)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Name,
        signer: ec.EllipticCurvePrivateKey,
        ca: bool,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            names = [x509.DNSName("localhost")] + [
                x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", OUTSIDE)
            ]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "protofl-test-ca")])
    ca = certificate("protofl-test-ca", ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP384R1())
    server = certificate("superlink", server_key, ca_name, ca_key, ca=False)
    paths = {"ca": folder / "ca.crt", "cert": folder / "server.pem", "key": folder / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths["key"].chmod(0o600)
    return paths


def write_node_key(path: Path) -> Path:
    """An ECDSA key pair in OpenSSH format, as ``ssh-keygen -t ecdsa -b 384`` writes it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    public = path.with_suffix(".pub")
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    )
    return public


def can_bind(host: str) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, 0))
        except OSError:
            return False
    return True


class SafeDeployment(Deployment):
    """Section 3's deployment: SuperLink on loopback with TLS, node authentication and a
    SuperExec secret; the operator's own SuperExec; the gate on the outside address."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate_port = free_port()
        self.certs = write_certificates(root / "certs")
        self.secret = root / "superexec.secret"
        self.secret.write_bytes(os.urandom(32))
        self.secret.chmod(0o600)

    def start_superlink_alone(self) -> None:
        tls = [
            "--ssl-ca-certfile",
            str(self.certs["ca"]),
            "--ssl-certfile",
            str(self.certs["cert"]),
            "--ssl-keyfile",
            str(self.certs["key"]),
        ]
        self.start(
            "superlink",
            "flower-superlink",
            *tls,
            "--enable-supernode-auth",
            "--database",  # as section 3 says: registrations then survive a restart
            str(self.root / "superlink.db"),
            "--isolation",
            "process",
            "--superexec-auth-secret-file",
            str(self.secret),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.link_port),
        )
        self.wait_healthy()

    def restart_superlink(self) -> None:
        self.kill("superlink", signal.SIGTERM)
        self.processes["superlink"].wait(timeout=30)
        self.start_superlink_alone()

    def start_safe_superlink(self) -> None:
        self.start_superlink_alone()
        self.start(
            "superexec",
            "flower-superexec",
            "--root-certificates",
            str(self.certs["ca"]),
            "--runtime-api-address",
            f"127.0.0.1:{self.link_port}",
            "--superexec-auth-secret-file",
            str(self.secret),
        )
        self.start(
            "gate",
            "python",
            "-m",
            "protofl.flower",
            "gate",
            "--listen",
            f"{OUTSIDE}:{self.gate_port}",
            "--superlink",
            f"127.0.0.1:{self.link_port}",
            "--ssl-certfile",
            str(self.certs["cert"]),
            "--ssl-keyfile",
            str(self.certs["key"]),
            "--superlink-ca",
            str(self.certs["ca"]),
        )
        self.wait_for_gate()

    def wait_healthy(self, timeout: float = 60) -> None:
        context = ssl.create_default_context(cafile=str(self.certs["ca"]))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                connection = http.client.HTTPSConnection(
                    "127.0.0.1", self.link_port, context=context, timeout=2
                )
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.3)
        pytest.fail(f"SuperLink not healthy within {timeout} s:\n{self.log('superlink')[-3000:]}")

    def wait_for_gate(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex((OUTSIDE, self.gate_port)) == 0:
                    return
            if self.processes["gate"].poll() is not None:
                break
            time.sleep(0.3)
        pytest.fail(f"gate not listening within {timeout} s:\n{self.log('gate')[-3000:]}")

    def start_node(self, name: str, partition: int, key: Path) -> None:
        self.start(
            name,
            "flower-supernode",
            "--root-certificates",
            str(self.certs["ca"]),
            "--superlink",
            f"{OUTSIDE}:{self.gate_port}",
            "--auth-supernode-private-key",
            str(key),
            "--port",
            str(free_port()),
            "--node-config",
            f"partition-id={partition}",
        )

    def cli_home(self, name: str, address: str) -> dict[str, str]:
        """A `flwr` CLI configuration that knows one SuperLink address and ``ca.crt``."""
        home = self.root / name
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "link"\n\n[superlink.link]\naddress = "{address}"\n'
            f'root-certificates = "{self.certs["ca"]}"\n'
        )
        return {**os.environ, **FLOWER_ENV, "FLWR_HOME": str(home)}

    def flwr(
        self, env: dict[str, str], *args: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "flwr"), *args],
            env=env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture
def safe_deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SafeDeployment]:
    if not (BIN / "flower-superlink").exists():
        pytest.skip("Flower's commands are not installed (pip install protofl[flower]).")
    if importlib.util.find_spec("cryptography") is None:
        pytest.skip("cryptography (a Flower dependency) is missing; no certificates.")
    if not can_bind(OUTSIDE):
        pytest.skip(f"{OUTSIDE} is not a loopback address here (Linux has it; macOS does not)")
    # SuperExec starts `flwr-serverapp` and SuperNodes `flwr-clientapp` by name: they must
    # find this environment's scripts whatever PATH pytest was started with.
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    # ... and the protofl this test imported (a checkout's src/ may shadow an installed one).
    here = str(Path(protofl.__file__).resolve().parents[1])
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    )
    running = SafeDeployment(tmp_path / "flower")
    try:
        yield running
    finally:
        running.stop()


def node_ids(listing: str) -> list[int]:
    return [int(node["node-id"]) for node in json.loads(listing)["nodes"]]


@pytest.mark.slow
@pytest.mark.flower_e2e
def test_from_outside_only_the_fleet_api_answers(
    safe_deployment: SafeDeployment, tmp_path: Path
) -> None:
    deployment = safe_deployment
    deployment.start_safe_superlink()
    # The SuperLink itself is not on the outside address at all.
    with socket.socket() as probe:
        assert probe.connect_ex((OUTSIDE, deployment.link_port)) != 0

    operator = deployment.cli_home("operator", f"127.0.0.1:{deployment.link_port}")
    stranger = deployment.cli_home("stranger", f"{OUTSIDE}:{deployment.gate_port}")
    node_key = write_node_key(tmp_path / "keys" / "node0")
    stranger_key = write_node_key(tmp_path / "keys" / "stranger")
    registered = deployment.flwr(operator, "supernode", "register", str(node_key))
    assert registered.returncode == 0, registered.stdout + registered.stderr
    deployment.start_node("node0", 0, node_key.with_suffix(""))
    deployment.start_node("intruder", 1, stranger_key.with_suffix(""))  # key never registered

    listing = deployment.flwr(operator, "supernode", "list", "--format", "json")
    assert listing.returncode == 0, listing.stdout + listing.stderr
    [node] = node_ids(listing.stdout)  # only the registered key has a node

    # Every Control call a stranger's `flwr` makes through the outside address fails.
    app = write_tiny_app(
        tmp_path / "app",
        dataclasses.replace(TINY_ONE, out=str(tmp_path / "results")),
        num_nodes=1,
        min_clients=1,
        node_timeout=60,
        round_timeout=120,
    )
    control_calls = deployment.log("superlink").count("/v1/control/")
    attempts = {
        "register a key": ["supernode", "register", str(stranger_key)],
        "list nodes": ["supernode", "list"],
        "unregister a node": ["supernode", "unregister", str(node)],
        "list runs": ["ls"],
        "submit a run": ["run", str(app)],
    }
    # All at once: each `flwr` spends seconds importing, and they do not depend on each other.
    with ThreadPoolExecutor(len(attempts)) as pool:
        runs = pool.map(lambda arguments: deployment.flwr(stranger, *arguments), attempts.values())
        done = dict(zip(attempts, runs, strict=True))
    for what, result in done.items():
        output = result.stdout + result.stderr
        assert result.returncode != 0, f"a stranger could {what}:\n{output}"
        assert "403 Forbidden" in output, f"{what} failed, but not at the gate:\n{output}"
    # ... and every Control and Runtime route, called by hand, is refused by the gate.
    context = ssl.create_default_context(cafile=str(deployment.certs["ca"]))
    protobuf = {"content-type": "application/protobuf"}
    for path in [*sorted(control_and_runtime_paths()), "/v1/fleet/../control/list-runs"]:
        connection = http.client.HTTPSConnection(OUTSIDE, deployment.gate_port, context=context)
        connection.request("POST", path, body=b"", headers=protobuf)
        assert connection.getresponse().status == 403, path
        connection.close()
    # None of them reached the SuperLink (its access log names every Control call it gets).
    assert deployment.log("superlink").count("/v1/control/") == control_calls
    # On the host itself the Runtime API wants the SuperExec secret (process isolation), so
    # a stray `flower-superexec` there cannot take a ServerApp; the Control API does not.
    inside = http.client.HTTPSConnection("127.0.0.1", deployment.link_port, context=context)
    inside.request("POST", "/v1/runtime/acquire-task", body=b"", headers=protobuf)
    assert inside.getresponse().status == 401
    inside.close()

    # `protofl flower check-node` tells a node's owner what Flower would accept silently.
    from protofl.flower.preflight import check_node

    ca = str(deployment.certs["ca"])
    gate = f"{OUTSIDE}:{deployment.gate_port}"
    checked = check_node(
        gate, root_certificates=ca, insecure=False, private_key=str(node_key.with_suffix(""))
    )
    assert all(finding.ok for finding in checked), checked
    [*_, mismatch] = check_node(gate, root_certificates=None, insecure=True, private_key=None)
    assert not mismatch.ok and "speaks TLS" in mismatch.message
    link = f"127.0.0.1:{deployment.link_port}"  # the SuperLink's own port, as before the gate
    [*_, exposed] = check_node(link, root_certificates=ca, insecure=False, private_key=None)
    assert not exposed.ok and "Control API" in exposed.message

    # Restarted on its --database, the SuperLink still knows node0's key and node id; node0
    # and the operator's SuperExec reconnect by themselves (nothing else is restarted).
    deployment.restart_superlink()
    listing = deployment.flwr(operator, "supernode", "list", "--format", "json")
    assert node_ids(listing.stdout) == [node]  # not unregistered, and no stranger's key
    # A SuperNode with an unregistered key is turned away through the gate (and exits).
    intruder = deployment.processes["intruder"].poll()
    assert intruder not in (None, 0), deployment.log("intruder")[-2000:]
    # The operator, on the SuperLink's host, runs the federation; node0 trains through the gate.
    federation = deployment.flwr(operator, "run", str(app), "--stream", timeout=240)
    assert federation.returncode == 0, federation.stdout[-3000:] + federation.stderr[-3000:]
    rounds = read_metrics(tmp_path / "results")
    assert [r["round"] for r in rounds] == [1], federation.stdout[-3000:]
    assert list(rounds[0]["clients"]) == ["handwritten-0"]  # type: ignore[call-overload]
