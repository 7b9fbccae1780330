"""The Fleet gate: a reverse proxy that lets only SuperNode (Fleet API) calls reach a SuperLink.

Flower 1.41's SuperLink serves three HTTP APIs on its one ``--host``/``--port``: the Fleet
API (``/v1/fleet/...``, what SuperNodes call), the Control API (``/v1/control/...``, what
``flwr`` calls: register node keys, submit and stop runs, unregister nodes) and the Runtime
API (``/v1/runtime/...``, what SuperExec and the ServerApp call). ``--control-api-address``
and ``--fleet-api-address`` are accepted and ignored, and the Control API has no
authentication in this distribution, so whoever reaches the port controls the federation.

The deployment in ``docs/flower.md`` section 3 therefore binds the SuperLink to 127.0.0.1 and
puts this gate on the address the SuperNodes use. The gate forwards a request only when it is
a POST to one of the Fleet routes Flower itself defines (exact paths, no prefix match, so
``/v1/fleet/../control/...`` and percent-encoded variants are refused), and answers 403 to
everything else without contacting the SuperLink. Node authentication still happens in the
SuperLink: the gate passes the SuperNode's signed headers through untouched.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx

from protofl.errors import ConfigError
from protofl.flower.preflight import check_private_key

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Flower's own limit on one gRPC message; Fleet objects (model weights) stay below it.
MAX_BODY_BYTES = 512 * 1024 * 1024
# Per-connection headers (RFC 9110 section 7.6.1) and the ones httpx recomputes.
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
    }
)
# uvicorn writes its own; the SuperLink's copies would only duplicate them.
_NOT_RETURNED = _NOT_FORWARDED | {"date", "server"}
REFUSAL = b"refused by the protofl fleet gate: only SuperNode (Fleet API) calls pass\n"


def fleet_paths() -> frozenset[str]:
    """The Fleet API's routes as Flower defines them (``/v1/fleet/register-node``, ...)."""
    from flwr.superlink.routers.fleet.router import router

    paths = frozenset(route.path for route in router.routes)  # type: ignore[attr-defined]
    if not paths or not all(path.startswith("/v1/fleet/") for path in paths):
        # A Flower release that moved its routes would otherwise open or close the gate
        # silently; better to stop here than to guess.
        raise ConfigError(f"unexpected Fleet routes in this Flower version: {sorted(paths)}")
    return paths


class FleetGate:
    """An ASGI app forwarding Fleet API calls to ``upstream`` and refusing all others."""

    def __init__(self, upstream: str, verify: str | bool = True) -> None:
        self.upstream = upstream.rstrip("/")
        self.allowed = fleet_paths()
        self.verify = verify
        self.client: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # websockets: Flower uses none on the Fleet API
            return
        path, method = scope["path"], scope["method"]
        if method != "POST" or path not in self.allowed:
            client = scope.get("client") or ("?", 0)
            logger.warning("refused %s %s from %s", method, path, client[0])
            await _respond(send, 403, REFUSAL)
            return
        body = await _read_body(receive)
        if body is None:
            await _respond(send, 413, b"request body too large\n")
            return
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in scope["headers"]
            if name.decode("latin-1").lower() not in _NOT_FORWARDED
        ]
        if self.client is None:  # served without its lifespan: nothing to forward with
            await _respond(send, 503, b"fleet gate not started\n")
            return
        try:
            # The allowed path string, not the raw one from the request, goes upstream.
            reply = await self.client.post(self.upstream + path, content=body, headers=headers)
        except httpx.TransportError as err:
            logger.warning("SuperLink at %s unreachable: %s", self.upstream, err)
            # 503 is one of the statuses a SuperNode retries on.
            await _respond(send, 503, b"SuperLink unreachable\n")
            return
        out = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in reply.headers.multi_items()
            if name.lower() not in _NOT_RETURNED
        ]
        await _respond(send, reply.status_code, reply.content, out)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # A SuperNode's pull can wait on the SuperLink; keep Flower's 30 s client timeout.
                self.client = httpx.AsyncClient(verify=self.verify, timeout=30.0)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.client is not None:
                    await self.client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    if headers is None:
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def split_address(address: str, what: str) -> tuple[str, int]:
    """``"192.0.2.10:9092"`` or ``"[::1]:9092"`` -> host and port; a ConfigError otherwise."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{what}: expected HOST:PORT (e.g. 127.0.0.1:9091), got {address!r}")
    return host, int(port)


def serve_gate(
    listen: str,
    superlink: str,
    *,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
    superlink_ca: str | None,
) -> None:
    """Run the gate until interrupted: ``listen`` faces the SuperNodes, ``superlink`` is local.

    Without ``ssl_certfile``/``ssl_keyfile`` the gate speaks plain HTTP, and without
    ``superlink_ca`` it reaches the SuperLink over plain HTTP; both only make sense on loopback.
    """
    import uvicorn

    host, port = split_address(listen, "--listen")
    link_host, link_port = split_address(superlink, "--superlink")
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ConfigError("--ssl-certfile and --ssl-keyfile go together; give both or neither")
    if ssl_keyfile is not None:
        check_private_key(ssl_keyfile, "--ssl-keyfile")
    if not _is_loopback(link_host):
        logger.warning(
            "the SuperLink address %s is not a loopback address: anyone who reaches it there "
            "bypasses this gate and reaches the Control and Runtime APIs",
            link_host,
        )
    scheme = "https" if superlink_ca else "http"
    link = f"[{link_host}]" if ":" in link_host else link_host
    gate = FleetGate(f"{scheme}://{link}:{link_port}", verify=superlink_ca or False)
    logger.info("fleet gate on %s:%d -> %s", host, port, gate.upstream)
    uvicorn.run(
        gate,
        host=host,
        port=port,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        access_log=False,
        log_level="warning",
        lifespan="on",
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
