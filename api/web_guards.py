"""What stops a web page from using labq through its visitor's browser.

A browser runs pages of every site its user visits, and those pages may send requests to labq:
to 127.0.0.1:8000 directly, or to a name of their own that they point at 127.0.0.1 (DNS
rebinding). Three rules keep them out:

- Writes only from labq's own pages (SameOriginWrites). A write (POST, PUT, PATCH, DELETE) whose
  `Origin` is another site, neither this server's own origin nor one listed in
  LABQ_CORS_ORIGINS, is a 403. So is one without `Origin` whose `Sec-Fetch-Site` says it crossed
  sites. curl, scripts and the CLI send neither header and are not concerned.
- Writes only as JSON. A write without `Content-Type: application/json` is a 415, whether or not it
  has a body. An HTML form can send only urlencoded, multipart or text/plain bodies, and a script
  on another origin cannot send JSON without a CORS preflight, which only LABQ_CORS_ORIGINS pass.
  DELETE needs no content type: no form can send it, and another site's script only after that
  same preflight.
- Loopback names only (LoopbackHosts). Bound to loopback, the API answers only requests addressed
  to localhost, 127.0.0.1, [::1] (any port), its own bind address and LABQ_ALLOWED_HOSTS (for a
  proxy that forwards another name). A rebound name is a 400, so a page can neither read nor
  write. Bound beyond loopback, every request needs a token, which no other site's page holds.
"""

from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import contract
from api.auth import WRITE_METHODS, is_loopback
from core.settings import Settings

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
SAME_ORIGIN_FETCH = frozenset({"same-origin", "none"})  # "none": typed by the user
DEFAULT_PORTS = {"http": 80, "https": 443}
JSON_TYPE = "application/json"
# Methods a form cannot send and another site's script sends only after a CORS preflight, which
# only LABQ_CORS_ORIGINS pass: `curl -X DELETE URL` needs no content type.
PREFLIGHTED = frozenset({"DELETE"})
_HOST_PASSED = "labq.host_passed"


def _refusal(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message, "message": message}, status_code=status)


def _host_and_port(netloc: str, scheme: str) -> tuple[str, int | None]:
    parts = urlsplit(f"//{netloc}")
    try:
        port = parts.port
    except ValueError:
        return "", None
    return (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(scheme)


def same_origin(origin: str, host_header: str) -> bool:
    """Whether `origin` (a browser's Origin header) names the server this request reached (its
    Host header). The scheme is left out: behind a TLS proxy the server sees plain HTTP."""
    parts = urlsplit(origin)
    if parts.scheme not in DEFAULT_PORTS or not parts.netloc:
        return False  # "null" (sandboxed frames, files) and anything malformed
    mine = _host_and_port(host_header, parts.scheme)
    return bool(mine[0]) and _host_and_port(parts.netloc, parts.scheme) == mine


class SameOriginWrites:
    """Writes only from this server's own pages (or allowlisted origins), and only as JSON."""

    def __init__(self, app: ASGIApp, cors_origins: list[str]):
        self.app = app
        self.allowed = {o.rstrip("/").lower() for o in cors_origins}

    def _check(self, method: str, headers: Headers) -> JSONResponse | None:
        origin = headers.get("origin")
        if origin is not None:
            if origin.rstrip("/").lower() not in self.allowed and not same_origin(
                origin, headers.get("host", "")
            ):
                return _refusal(
                    403,
                    f"cross-site write refused: a page of {origin[:200]} may not write to labq "
                    "(writes come from labq's own pages, from clients that send no Origin, or "
                    "from origins listed in LABQ_CORS_ORIGINS)",
                )
        elif headers.get("sec-fetch-site", "none").lower() not in SAME_ORIGIN_FETCH:
            return _refusal(
                403, "cross-site write refused: the browser reports it comes from another site"
            )
        media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != JSON_TYPE and method not in PREFLIGHTED:
            return _refusal(
                415,
                "writes must be sent as JSON: set 'Content-Type: application/json' "
                f"(also on requests without a body); got {media_type[:100] or 'none'}",
            )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in WRITE_METHODS:
            refused = self._check(scope["method"], Headers(scope=scope))
            if refused is not None and self._routed(scope):
                return await refused(scope, receive, send)
        await self.app(scope, receive, send)

    @staticmethod
    def _routed(scope: Scope) -> bool:
        """Whether a route takes this method on this path. When none does, the app answers 404
        or 405 (which write nothing), so that what the path takes stays discoverable."""
        app = scope.get("app")
        if app is None:
            return True
        return scope["method"] in contract.allowed_methods(app, scope["path"])


class LoopbackHosts:
    """Starlette's TrustedHostMiddleware, with a refusal that says how to allow a name."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]):
        self.app, self.allowed_hosts = app, allowed_hosts
        self.trusted = TrustedHostMiddleware(
            self._passed, allowed_hosts=allowed_hosts, www_redirect=False
        )

    async def _passed(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_HOST_PASSED] = True
        await self.app(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_if_passed(message: Message) -> None:
            if scope.get(_HOST_PASSED):
                await send(message)

        await self.trusted(scope, receive, send_if_passed)
        if not scope.get(_HOST_PASSED):
            host = Headers(scope=scope).get("host", "")[:200]
            refused = _refusal(
                400,
                f"Host {host!r} is not served: this labq listens on loopback and answers only "
                f"{', '.join(self.allowed_hosts)} (a proxy that forwards another name: add it "
                "to LABQ_ALLOWED_HOSTS)",
            )
            await refused(scope, receive, send)


def loopback_hosts(settings: Settings) -> list[str]:
    bind = f"[{settings.host}]" if ":" in settings.host else settings.host
    return list(dict.fromkeys([*LOOPBACK_HOSTS, bind.lower(), *settings.allowed_hosts]))


def install(app: FastAPI, settings: Settings) -> None:
    """From the outside in: Host names, CORS (when configured), then the write rules."""
    app.add_middleware(SameOriginWrites, cors_origins=settings.cors_origins)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    if is_loopback(settings.host):
        app.add_middleware(LoopbackHosts, allowed_hosts=loopback_hosts(settings))
