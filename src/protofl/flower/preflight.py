"""Checks before starting a SuperNode or the gate: what Flower 1.41 accepts without a word.

- A private key readable by other accounts (mode 0644): Flower loads it silently, and
  anyone on that machine can then pose as the node.
- ``--insecure`` against a TLS SuperLink: the node speaks plain HTTP, the TLS server drops
  the connection without an answer, and the node retries forever logging only
  "Connection attempt failed".
- An address that also serves the Control API: whoever reaches it controls the federation
  (``docs/flower.md`` section 3).

``protofl flower check-node`` runs :func:`check_node` with the node's own arguments.
"""

from __future__ import annotations

import socket
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

from protofl.errors import ConfigError

# Short: a check, not a wait (a SuperNode itself retries for as long as it likes).
TIMEOUT_S = 10.0


def check_private_key(path: str | Path, what: str = "private key") -> None:
    """Refuse a private key file that other accounts can read (or that is missing)."""
    key = Path(path).expanduser()
    try:
        mode = stat.S_IMODE(key.stat().st_mode)
    except OSError as err:
        raise ConfigError(f"{what} {key}: cannot read it ({err.strerror})") from err
    if mode & 0o077:
        raise ConfigError(
            f"{what} {key} is readable or writable by other accounts (mode {mode:04o}); "
            f"anyone on this machine could use it. Run: chmod 600 {key}"
        )


def load_node_key(path: str | Path) -> None:
    """The key must be one Flower can use: an OpenSSH-format elliptic-curve private key."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key

    check_private_key(path, "SuperNode key")
    try:
        key = load_ssh_private_key(Path(path).expanduser().read_bytes(), None)
    except (ValueError, TypeError) as err:
        raise ConfigError(
            f"SuperNode key {path}: not an unencrypted OpenSSH private key ({err}); make one "
            'with: ssh-keygen -t ecdsa -b 384 -N "" -f keys/node0'
        ) from err
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(
            f"SuperNode key {path}: a {type(key).__name__}, but Flower 1.41 takes only "
            'elliptic-curve keys: ssh-keygen -t ecdsa -b 384 -N "" -f keys/node0'
        )


@dataclass(frozen=True)
class Finding:
    """One result of :func:`check_node`: ``ok`` False means the node would not work or is
    exposed."""

    ok: bool
    message: str


def check_node(
    superlink: str,
    *,
    root_certificates: str | None,
    insecure: bool,
    private_key: str | None,
) -> list[Finding]:
    """Check what a ``flower-supernode`` with these arguments would meet, without joining."""
    from protofl.flower.gate import split_address

    findings: list[Finding] = []
    if private_key is not None:
        try:
            load_node_key(private_key)
            findings.append(Finding(True, f"key {private_key}: private to its owner, loads"))
        except ConfigError as err:
            findings.append(Finding(False, str(err)))
    host, port = split_address(superlink, "--superlink")
    try:
        socket.create_connection((host, port), timeout=TIMEOUT_S).close()
    except OSError as err:
        return [*findings, Finding(False, f"{superlink}: cannot connect ({err})")]
    speaks_tls = _speaks_tls(host, port)
    verify: ssl.SSLContext | bool = False
    if insecure:
        if speaks_tls:
            findings.append(
                Finding(
                    False,
                    f"{superlink} speaks TLS, but the node has --insecure: it would retry "
                    "forever ('Connection attempt failed'). Start it with "
                    "--root-certificates ca.crt instead of --insecure.",
                )
            )
            return findings
        findings.append(Finding(True, f"{superlink}: plain HTTP, as --insecure expects"))
    else:
        if not speaks_tls:
            plain = f"{superlink} does not speak TLS (a SuperLink with --insecure?)"
            findings.append(Finding(False, plain))
            return findings
        try:
            verify = ssl.create_default_context(cafile=root_certificates)
            with socket.create_connection((host, port), timeout=TIMEOUT_S) as raw:
                verify.wrap_socket(raw, server_hostname=host).close()
        except (ssl.SSLError, OSError) as err:
            findings.append(Finding(False, f"{superlink}: TLS check failed: {err}"))
            return findings
        findings.append(Finding(True, f"{superlink}: TLS certificate checks out"))
    scheme = "http" if insecure else "https"
    findings.append(_control_api_exposed(f"{scheme}://{superlink}", verify))
    return findings


def _speaks_tls(host: str, port: int) -> bool:
    """Whether the server completes a TLS handshake (certificate not checked here)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only asking whether it speaks TLS at all
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S) as raw:
            context.wrap_socket(raw, server_hostname=host).close()
    except (ssl.SSLError, OSError):
        return False
    return True


def _control_api_exposed(base: str, verify: ssl.SSLContext | bool) -> Finding:
    import httpx

    # An empty ListRuns request is a valid protobuf message; a SuperLink answers it with
    # 200 and no credentials in Flower 1.41, the gate with 403.
    try:
        reply = httpx.post(
            f"{base}/v1/control/list-runs",
            content=b"",
            headers={"content-type": "application/protobuf"},
            verify=verify,
            timeout=TIMEOUT_S,
        )
    except httpx.HTTPError as err:
        return Finding(False, f"{base}: no answer to an HTTP request ({err})")
    if reply.status_code == 200:
        return Finding(
            False,
            f"{base} also serves Flower's Control API: anyone who reaches this address can "
            "register keys, run code and unregister nodes. Point SuperNodes at the Fleet "
            "gate, with the SuperLink on 127.0.0.1 (docs/flower.md section 3).",
        )
    return Finding(True, f"{base}: the Control API is not served here ({reply.status_code})")
