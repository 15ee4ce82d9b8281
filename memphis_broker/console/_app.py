"""The console's web app: Starlette routes, Jinja2 pages, uvicorn in the control plane's loop.

Security (docs/console.md, "Security"):

* Login is checked by nats-server itself: the console opens a NATS connection with the given
  credentials (the root token in token mode, ``<user>$1`` and the password in password mode,
  as the SDKs do) and accepts the login if the server does. The console keeps no passwords.
* Sessions are Starlette's signed cookie (``SessionMiddleware``, ``HttpOnly``,
  ``SameSite=Strict``), signed with a key made at start: a restart logs everyone out. The cookie
  carries a random session id that the console also keeps while the session lasts; logout
  forgets it, so a copy of the cookie taken before logout is refused afterwards.
* After 5 failed logins from one client address within 60 seconds, that address is refused
  (429) until the oldest failure is a minute old, without asking the broker (``_throttle``).
* Every POST carries the session's CSRF token (a hidden form field), compared in constant time;
  a POST without it is refused with 403 before anything happens.
* Pages are Jinja2 templates with autoescaping on: payloads and headers are user data and are
  shown as text (binary as hex), never as markup.
* Every state change first shows a confirmation page; only its second POST acts, through the
  same ``$memphis_*`` requests the SDKs send or the same functions ``memphis-broker dls`` calls.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import jinja2
import nats.errors
import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from memphis_broker import _dls
from memphis_broker._admin import AdminError, connect_once
from memphis_broker._context import Context
from memphis_broker.console._metrics import Metrics, RateHistory, station_totals
from memphis_broker.console._state import (
    MAX_BROWSE,
    dls_rows,
    payload_view,
    read_health,
    read_messages,
    read_station,
    read_stations,
    schemas_with_stations,
    station_schema,
)
from memphis_broker.console._throttle import LoginThrottle
from memphis_core.memphis import _control as rq
from memphis_core.memphis._enums import SchemaType
from memphis_core.memphis._options import station_options
from memphis_core.nats._errors import LocalProtocolError

__all__ = ["Console", "bind"]

_HERE: Final = Path(__file__).parent
_SESSION_S: Final = 8 * 3600
_LOGIN_TIMEOUT_S: Final = 3.0
_REQUEST_TIMEOUT_S: Final = 20.0  # the SDKs' wait for a control reply (docs/protocol.md)
_BASIC_CACHE_S: Final = 60.0
_DEFAULT_BROWSE: Final = 10
#: Sent with every page: scripts only from the console's own files (so even markup that slipped
#: through escaping could not run inline code), no framing (no clickjacking of a confirmation
#: page), forms only to the console. Inline styles stay allowed: Chart.js and htmx set them.
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0: a free port).

    Raises:
        OSError: the address is in use or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Console:
    """The console of one ``memphis-broker`` process.

    Args:
        ctx: returns the control plane's handler context (its connection, JetStream API and
            buckets); read at each request, so a restarted plane is picked up.
        servers: NATS URLs, for checking logins.
        monitor_urls: every node's monitoring endpoint (may be empty: no health panel).
        password_mode: True when the broker has users and passwords; False for token mode.
        sock: the bound listening socket (see :func:`bind`).
    """

    def __init__(
        self,
        ctx: Callable[[], Context],
        *,
        servers: Sequence[str],
        monitor_urls: Sequence[str],
        password_mode: bool,
        sock: socket.socket,
    ) -> None:
        self._ctx = ctx
        self._servers = list(servers)
        self.monitor_urls = list(monitor_urls)
        self.password_mode = password_mode
        self._sock = sock
        self.metrics = Metrics()
        self.history = RateHistory(lambda: station_totals(ctx()))
        self._basic_ok: dict[str, float] = {}
        self._throttle = LoginThrottle(time.monotonic)
        #: Live sessions: session id -> (user, monotonic expiry). Logout removes its id.
        self._sessions: dict[str, tuple[str, float]] = {}
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,  # every page: payloads, headers and names are user data
            undefined=jinja2.StrictUndefined,
        )
        self.templates = Jinja2Templates(env=env)
        self.app = Starlette(
            routes=self._routes(),
            middleware=[
                Middleware(
                    SessionMiddleware,
                    secret_key=secrets.token_urlsafe(32),
                    session_cookie="memphis_console",
                    max_age=_SESSION_S,
                    same_site="strict",
                )
            ],
        )
        self._server: uvicorn.Server | None = None
        self._sampler: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The address to print and open (a wildcard bind host is shown as loopback)."""
        host, port = self._sock.getsockname()[:2]
        shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"

    async def start(self) -> None:
        """Serve on the bound socket, in the running loop (no thread, no signal handlers)."""
        config = uvicorn.Config(
            self.app, lifespan="off", log_config=None, access_log=False, log_level="warning"
        )
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        # startup(), not serve(): serve() installs its own signal handlers, and the launcher
        # owns SIGINT/SIGTERM.
        await server.startup(sockets=[self._sock])
        self._server = server
        self._sampler = asyncio.create_task(self.history.run())

    async def stop(self) -> None:
        """Stop the sampler and the web server (each bounded to 5 s) and close the socket."""
        if self._sampler is not None:
            self.history.stop()
            self._sampler.cancel()
            await asyncio.wait([self._sampler], timeout=5.0)
            self._sampler = None
        if self._server is not None:
            self._server.force_exit = True  # no waiting for open keep-alive browsers
            # Bounded: stopping the broker must not hang on a browser's connection.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.shutdown(sockets=[self._sock]), 5.0)
            self._server = None
        self._sock.close()

    # ------------------------------------------------------------------ auth and forms

    async def _login_ok(self, request: Request, username: str, secret: str) -> bool:
        """Ask nats-server: does it accept these credentials (see the module docstring)? The
        answer counts for the request's client address in the failed-login throttle."""
        ok = await self._broker_accepts(username, secret)
        client = _client(request)
        if ok:
            self._throttle.succeeded(client)
        else:
            self._throttle.failed(client)
        return ok

    async def _broker_accepts(self, username: str, secret: str) -> bool:
        auth: dict[str, Any] = (
            {"user": f"{username}$1", "password": secret}
            if self.password_mode
            else {"token": secret}
        )
        try:
            nc = await connect_once(
                self._servers, timeout=_LOGIN_TIMEOUT_S, name="MEMPHIS console login", **auth
            )
        except AdminError:
            return False
        await nc.close()
        return True

    async def _basic_auth(self, request: Request) -> str | None:
        """``Authorization: Basic`` (for Prometheus' ``basic_auth``): the user, or None."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if not sep:
            return None
        digest = hashlib.sha256(value.encode()).hexdigest()
        now = time.monotonic()
        if self._basic_ok.get(digest, 0.0) > now:
            return user
        if not await self._login_ok(request, user, secret):
            return None
        self._basic_ok = {d: t for d, t in self._basic_ok.items() if t > now}
        self._basic_ok[digest] = now + _BASIC_CACHE_S
        return user

    def _user(self, request: Request) -> str | None:
        """The logged-in user of this request's session, or None (no, ended or expired)."""
        live = self._sessions.get(str(request.session.get("sid", "")))
        if live is None:
            return None
        user, until = live
        if until <= time.monotonic():
            del self._sessions[str(request.session["sid"])]
            return None
        return user

    def _open_session(self, request: Request, user: str) -> None:
        """A fresh session (new id and CSRF token) for ``user``, replacing this request's."""
        now = time.monotonic()
        self._sessions = {sid: v for sid, v in self._sessions.items() if v[1] > now}
        request.session.clear()
        sid = secrets.token_urlsafe(32)
        self._sessions[sid] = (user, now + _SESSION_S)
        request.session["sid"] = sid

    def _close_session(self, request: Request) -> None:
        self._sessions.pop(str(request.session.get("sid", "")), None)
        request.session.clear()

    @staticmethod
    def _csrf(request: Request) -> str:
        token = request.session.get("csrf")
        if not isinstance(token, str):
            token = secrets.token_urlsafe(32)
            request.session["csrf"] = token
        return token

    async def _form(self, request: Request) -> FormData:
        """The POST body, once its CSRF token matched the session's (403 otherwise)."""
        form = await request.form()
        sent = form.get("csrf")
        want = request.session.get("csrf")
        if not (isinstance(sent, str) and isinstance(want, str)) or not secrets.compare_digest(
            sent, want
        ):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page")
        return form

    def _page(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context.update(
            user=self._user(request) or "",
            csrf=self._csrf(request),
            password_mode=self.password_mode,
            flash=request.session.pop("flash", None),
        )
        return self.templates.TemplateResponse(
            request, name, context, status_code=status, headers=_PAGE_HEADERS
        )

    def _confirm(
        self, request: Request, form: FormData, question: str, action: str
    ) -> Response | None:
        """The confirmation page, unless this POST is the confirmed one."""
        if form.get("confirmed") == "yes":
            return None
        fields = [(k, v) for k, v in form.multi_items() if k not in ("csrf", "confirmed")]
        return self._page(
            request,
            "confirm.html",
            question=question,
            action=action,
            fields=fields,
            # Back to the page the form was on: its path only, never another site.
            back=urlsplit(request.headers.get("referer", "")).path or "/",
        )

    def _done(self, request: Request, to: str, message: str, ok: bool = True) -> Response:
        request.session["flash"] = {"ok": ok, "text": message}
        return RedirectResponse(to, status_code=303)

    async def _request(self, subject: str, body: bytes) -> bytes:
        """Send a ``$memphis_*`` request as an SDK would, over the control plane's connection."""
        try:
            msg = await self._ctx().nc.request(subject, body, timeout=_REQUEST_TIMEOUT_S)
        except (nats.errors.Error, TimeoutError) as err:
            return f"no answer from the control plane: {err or type(err).__name__}".encode()
        return bytes(msg.data)

    # ------------------------------------------------------------------ routes

    def _routes(self) -> list[Route | Mount]:
        def page(
            fn: Callable[[Request], Awaitable[Response]],
        ) -> Callable[[Request], Awaitable[Response]]:
            async def guarded(request: Request) -> Response:
                user = self._user(request)
                if user is None:
                    if request.headers.get("hx-request") == "true":
                        # An htmx refresh of an open page: send the whole page to the login
                        # (htmx follows HX-Redirect), not the login form into a fragment.
                        shown = urlsplit(request.headers.get("hx-current-url", "")).path or "/"
                        return Response(
                            status_code=401, headers={"HX-Redirect": f"/login?next={shown}"}
                        )
                    return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
                request.state.user = user  # who the $memphis_* requests are sent as
                self.history.touch()  # someone is looking: keep the throughput graph fed
                return await fn(request)

            return guarded

        return [
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/metrics", self.metrics_page, methods=["GET"]),
            Route("/", page(self.overview), methods=["GET"]),
            Route("/partials/overview", page(self.overview_partial), methods=["GET"]),
            Route("/api/rates", page(self.rates), methods=["GET"]),
            Route("/stations", page(self.stations), methods=["GET"]),
            Route("/stations", page(self.create_station), methods=["POST"]),
            Route("/stations/{name}", page(self.station), methods=["GET"]),
            Route("/stations/{name}/groups", page(self.station_groups), methods=["GET"]),
            Route("/dls", page(self.dls_index), methods=["GET"]),
            Route("/dls/{name}", page(self.dls), methods=["GET"]),
            Route("/dls/{name}/resend", page(self.dls_resend), methods=["POST"]),
            Route("/dls/{name}/drop", page(self.dls_drop), methods=["POST"]),
            Route("/schemas", page(self.schemas), methods=["GET"]),
            Route("/schemas", page(self.create_schema), methods=["POST"]),
            Route("/schemas/enforce", page(self.enforce_schema), methods=["POST"]),
            Route("/schemas/detach", page(self.detach_schema), methods=["POST"]),
            Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
        ]

    async def login_page(self, request: Request) -> Response:
        return self._page(request, "login.html", error="", next=_safe_next(request))

    async def login(self, request: Request) -> Response:
        form = await self._form(request)
        username = str(form.get("username") or "root").strip().lower()
        secret = str(form.get("secret") or "")
        wait = self._throttle.retry_after(_client(request))
        if wait:
            response = self._page(
                request,
                "login.html",
                status=429,
                error=f"too many failed logins from this address: try again in {wait} s",
                next=_safe_next(request),
            )
            response.headers["Retry-After"] = str(wait)
            return response
        if not secret or not await self._login_ok(request, username, secret):
            return self._page(
                request,
                "login.html",
                status=401,
                error="login refused by the broker",
                next=_safe_next(request),
            )
        self._open_session(request, username)
        return RedirectResponse(_safe_next(request, form.get("next")), status_code=303)

    async def logout(self, request: Request) -> Response:
        await self._form(request)
        self._close_session(request)
        return RedirectResponse("/login", status_code=303)

    async def metrics_page(self, request: Request) -> Response:
        wait = self._throttle.retry_after(_client(request))
        if self._user(request) is None and wait:
            return Response(
                "too many failed logins\n", status_code=429, headers={"Retry-After": str(wait)}
            )
        if self._user(request) is None and await self._basic_auth(request) is None:
            return Response(
                "login required\n",
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="memphis console"'},
            )
        body = await self.metrics.render(self._ctx(), self.monitor_urls)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def _overview_context(self) -> dict[str, Any]:
        ctx = self._ctx()
        stations, health = await asyncio.gather(
            read_stations(ctx, producers=False), read_health(self.monitor_urls)
        )
        return {
            "stations": stations,
            "health": health,
            "total_messages": sum(s.messages for s in stations),
            "total_dls": sum(s.dls for s in stations),
            "sync": health[0].sync if health else "unknown (no monitoring endpoint)",
        }

    async def overview(self, request: Request) -> Response:
        return self._page(request, "overview.html", **await self._overview_context())

    async def overview_partial(self, request: Request) -> Response:
        return self._page(request, "_overview_stats.html", **await self._overview_context())

    async def rates(self, request: Request) -> Response:
        return JSONResponse(
            [
                {"at": p.at, "in": round(p.msgs_in, 3), "out": round(p.msgs_out, 3)}
                for p in self.history.points
            ]
        )

    async def stations(self, request: Request) -> Response:
        ctx = self._ctx()
        return self._page(
            request,
            "stations.html",
            stations=await read_stations(ctx, producers=False),
            schemas=[s for s, _ in await schemas_with_stations(ctx)],
        )

    async def create_station(self, request: Request) -> Response:
        form = await self._form(request)
        name = str(form.get("name") or "")
        try:
            opts = station_options(
                name,
                retention_type=str(form.get("retention_type") or "message_age_sec"),
                retention_value=int(str(form.get("retention_value") or "3600")),
                storage_type=str(form.get("storage_type") or "file"),
                replicas=int(str(form.get("replicas") or "1")),
                idempotency_window=float(str(form.get("idempotency_window") or "120")),
                schema_name=str(form.get("schema_name") or ""),
                send_poison_msg_to_dls=form.get("poison") == "on",
                send_schema_failed_msg_to_dls=form.get("schemaverse") == "on",
                partitions_number=int(str(form.get("partitions") or "1")),
                dls_station=str(form.get("dls_station") or ""),
            )
            body = rq.encode_station_create(opts, username=str(request.state.user))
        except (LocalProtocolError, ValueError) as err:
            return self._done(request, "/stations", f"not created: {err}", ok=False)
        asked = self._confirm(
            request,
            form,
            f"Create station {opts.name} with {opts.partitions_number} partition(s)?",
            "/stations",
        )
        if asked is not None:
            return asked
        error = rq.parse_plain_reply(await self._request(rq.STATION_CREATIONS, body))
        if error:
            return self._done(request, "/stations", f"not created: {error}", ok=False)
        return self._done(request, f"/stations/{opts.name}", f"station {opts.name} created")

    async def _station_or_404(self, name: str) -> dict[str, Any]:
        doc = await self._ctx().station(name.lower())
        if doc is None:
            raise HTTPException(404, f"station {name} does not exist")
        return doc

    async def station(self, request: Request) -> Response:
        ctx = self._ctx()
        doc = await self._station_or_404(request.path_params["name"])
        st = await read_station(ctx, doc)
        try:
            last = int(request.query_params.get("last", _DEFAULT_BROWSE))
        except ValueError:
            last = _DEFAULT_BROWSE
        last = max(1, min(last, MAX_BROWSE))
        schema = await station_schema(ctx, doc)
        messages = await read_messages(ctx, st, last, schema)
        return self._page(
            request,
            "station.html",
            st=st,
            messages=messages,
            last=last,
            schema_type=schema.schema_type if schema else "",
            max_browse=MAX_BROWSE,
        )

    async def station_groups(self, request: Request) -> Response:
        doc = await self._station_or_404(request.path_params["name"])
        st = await read_station(self._ctx(), doc)
        return self._page(request, "_groups.html", st=st)

    async def dls_index(self, request: Request) -> Response:
        stations = await read_stations(self._ctx(), producers=False)
        return self._page(request, "dls_index.html", stations=stations)

    async def dls(self, request: Request) -> Response:
        ctx = self._ctx()
        doc = await self._station_or_404(request.path_params["name"])
        st = await read_station(ctx, doc, dls=False)
        rows = await dls_rows(ctx, doc["name"])
        schema = await station_schema(ctx, doc)
        views = []
        for row in rows:
            details = row["message_details"]
            try:
                data = bytes.fromhex(details.get("data", ""))
            except ValueError:
                data = b""
            # A schema failure is shown as it came: by definition the schema cannot read it.
            poison = row.get("message_type") == "poison"
            views.append((row, payload_view(data, schema if poison else None)))
        return self._page(request, "dls.html", st=st, rows=views)

    def _ids(self, form: FormData) -> set[int] | None:
        if form.get("all") == "yes":
            return None
        ids = set()
        for value in form.getlist("id"):
            try:
                ids.add(int(str(value)))
            except ValueError:
                raise HTTPException(400, f"not a DLS id: {value!r}") from None
        return ids

    async def _dls_action(
        self,
        request: Request,
        verb: str,
        act: Callable[[Context, str, set[int] | None], Awaitable[int]],
    ) -> Response:
        form = await self._form(request)
        doc = await self._station_or_404(request.path_params["name"])
        station = doc["name"]
        ids = self._ids(form)
        back = f"/dls/{station}"
        if ids is not None and not ids:
            return self._done(request, back, "nothing selected", ok=False)
        which = "all dead letters" if ids is None else f"{len(ids)} dead letter(s)"
        asked = self._confirm(
            request, form, f"{verb} {which} of station {station}?", request.url.path
        )
        if asked is not None:
            return asked
        count = await act(self._ctx(), station, ids)
        noun = "message(s) to their groups" if verb == "Resend" else "row(s)"
        return self._done(request, back, f"{verb.lower()}: {count} {noun}")

    async def dls_resend(self, request: Request) -> Response:
        return await self._dls_action(request, "Resend", _dls.resend)

    async def dls_drop(self, request: Request) -> Response:
        return await self._dls_action(request, "Drop", _dls.drop)

    async def schemas(self, request: Request) -> Response:
        ctx = self._ctx()
        stations = sorted(doc["name"] for _k, doc in await ctx.store.stations.scan())
        return self._page(
            request,
            "schemas.html",
            schemas=await schemas_with_stations(ctx),
            stations=stations,
            types=[t.value for t in SchemaType],
        )

    async def create_schema(self, request: Request) -> Response:
        form = await self._form(request)
        name = str(form.get("name") or "")
        try:
            body = rq.schema_create_body(
                name,
                str(form.get("type") or ""),
                str(form.get("content") or ""),
                username=str(request.state.user),
            )
        except LocalProtocolError as err:
            return self._done(request, "/schemas", f"not created: {err}", ok=False)
        asked = self._confirm(
            request, form, f"Create schema {name} (or a new version)?", "/schemas"
        )
        if asked is not None:
            return asked
        reply = await self._request(rq.SCHEMA_CREATIONS, body)
        error = rq.parse_schema_create_reply(reply)
        if error:
            return self._done(request, "/schemas", f"not created: {error}", ok=False)
        return self._done(request, "/schemas", f"schema {name} saved")

    async def enforce_schema(self, request: Request) -> Response:
        form = await self._form(request)
        schema, station = str(form.get("schema") or ""), str(form.get("station") or "")
        asked = self._confirm(
            request, form, f"Enforce schema {schema} on station {station}?", "/schemas/enforce"
        )
        if asked is not None:
            return asked
        body = rq.schema_attach_body(schema, station, username=str(request.state.user))
        error = rq.parse_plain_reply(await self._request(rq.SCHEMA_ATTACHMENTS, body))
        if error:
            return self._done(request, "/schemas", f"not enforced: {error}", ok=False)
        return self._done(request, "/schemas", f"schema {schema} enforced on {station}")

    async def detach_schema(self, request: Request) -> Response:
        form = await self._form(request)
        station = str(form.get("station") or "")
        asked = self._confirm(
            request, form, f"Detach the schema of station {station}?", "/schemas/detach"
        )
        if asked is not None:
            return asked
        body = rq.schema_detach_body(station, username=str(request.state.user))
        error = rq.parse_plain_reply(await self._request(rq.SCHEMA_DETACHMENTS, body))
        if error:
            return self._done(request, "/schemas", f"not detached: {error}", ok=False)
        return self._done(request, "/schemas", f"schema detached from {station}")


def _client(request: Request) -> str:
    """The address a request came from, as the failed-login throttle counts it."""
    return request.client.host if request.client is not None else "unknown"


def _safe_next(request: Request, value: object = None) -> str:
    """Where to go after login: a local path only (no open redirect)."""
    target = str(value or request.query_params.get("next") or "/")
    # Browsers read a backslash as "/" and drop tabs and newlines from URLs, so "/<backslash>host"
    # and "/<tab>/host" would name another site as "//host" does. Starlette percent-encodes
    # them in Location today; this check does not rely on it.
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target)
        or urlsplit(target).netloc
    ):
        return "/"
    return target
