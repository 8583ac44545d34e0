"""The playground's web app: one page, a health check, streamed generation, hidden units.

    app = create_app(model, vocab, meta, Limits(max_concurrent=2), allow_hosts=["mybox.lan"])
    uvicorn.run(app, host="127.0.0.1", port=8000)

Routes (every error is JSON, ``{"error": "..."}``, with a 4xx/5xx status):
    GET  /             the page (self-contained: it loads nothing from anywhere else)
    GET  /api/health   {"status": "ok"}
    GET  /api/info     the model's shape, the features units can be ranked by, the limits
    POST /api/generate {"prompt", "length", "temperature", "top_k", "top_p", "argmax", "seed",
                        "top", "watch"} -> NDJSON, one record per character (see ``stream``)
    POST /api/units    {"text", "layer", "state", "unit"} or {"text", "rank": FEATURE}
                       -> one unit's activation per character (and the ranking)

The model is loaded once and shared. Up to ``max_concurrent`` generations run at once, stepped
together as one batch on one thread (generation.py), never on the event loop; unit analyses take
a slot too, on a worker thread. Requests beyond that wait in a bounded queue, first come, first
served, and are refused with 503 when it is full or their wait runs out.

Every request, whatever its route, is refused with 403 unless its Host header names the
server as localhost, a loopback address or one of ``allow_hosts`` (see ``HostCheck``): a
defence against DNS rebinding, as in Jupyter Server. Other sites' pages cannot use the API
either: there are no CORS headers, and a body that is not sent as JSON is refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import re
import secrets
import threading
from collections import deque
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from importlib.resources import files
from typing import Literal

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from ..data.vocab import EOS
from ..decoding import SamplingConfig
from ..errors import RnnkitError
from .generation import END, Batcher, Job
from .units import FEATURES, check_text, collect, rank_units, state_names

NDJSON = "application/x-ndjson"
# the page may talk to its own server and nothing else, whatever it ends up displaying
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
       "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'")


@dataclass
class Limits:
    max_prompt_chars: int = 4000
    """Longest prompt (and, plus max_length, the longest text for /api/units)."""
    max_length: int = 2000
    """Most characters one request may generate."""
    max_concurrent: int = 32
    """Generations (and unit analyses) running at once: the generations are the rows of one
    batch, each analysis holds a worker thread."""
    max_waiting: int = 64
    """Requests waiting for a slot; more get 503 at once."""
    queue_timeout_s: float = 30.0
    """A queued request that gets no worker within this gets 503."""
    timeout_s: float = 60.0
    """A generation still running after this ends with an error record."""
    max_body_bytes: int = 1 << 20
    """Largest request body."""

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not (value > 0 and math.isfinite(value)) and not (name == "max_waiting"
                                                                  and value == 0):
                flag = LIMIT_FLAGS.get(name, "--" + name.replace("_", "-"))
                raise RnnkitError(f"{flag} must be a finite number > 0, got {value}")


# the serve flag that sets a limit, where it is not the limit's own name
LIMIT_FLAGS = {"queue_timeout_s": "--timeout", "timeout_s": "--timeout"}


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Waiter:
    loop: asyncio.AbstractEventLoop
    event: asyncio.Event


class Slots:
    """At most ``capacity`` jobs at once, and at most ``max_waiting`` requests in line for a
    slot, first come, first served. A job ends on another thread: ``leave`` hands the slot
    straight to the next in line, waking it on its own event loop."""

    def __init__(self, capacity: int, max_waiting: int):
        self._lock = threading.Lock()
        self.capacity, self.max_waiting, self.running = capacity, max_waiting, 0
        self.queue: deque[Waiter] = deque()

    async def enter(self, timeout: float) -> None:
        """Take a slot, waiting at most ``timeout`` seconds; 503 when the line is full or
        the wait runs out."""
        waiter = self._join()
        try:
            await asyncio.wait_for(waiter.event.wait(), timeout)
        except asyncio.TimeoutError:
            if self._withdraw(waiter):
                raise ApiError(503, busy_message(self)) from None
            # the slot came just as the wait ran out: keep it
        except BaseException:
            if not self._withdraw(waiter):
                self.leave()  # granted, but nobody will use it: pass it on
            raise

    def _join(self) -> Waiter:
        waiter = Waiter(asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            if self.running < self.capacity and not self.queue:
                self.running += 1
                waiter.event.set()
            elif len(self.queue) >= self.max_waiting:
                raise ApiError(503, busy_message(self))
            else:
                self.queue.append(waiter)
        return waiter

    def _withdraw(self, waiter: Waiter) -> bool:
        """Leave the line; False when the waiter already holds a slot."""
        with self._lock:
            if waiter in self.queue:
                self.queue.remove(waiter)
                return True
            return False

    def leave(self) -> None:
        with self._lock:
            while self.queue:
                waiter = self.queue.popleft()
                try:
                    waiter.loop.call_soon_threadsafe(waiter.event.set)
                    return  # the slot changes hands: running stays the same
                except RuntimeError:  # that request's event loop is gone
                    continue
            self.running -= 1


def busy_message(slots: Slots) -> str:
    return (f"busy: {slots.running} generation(s) running and {len(slots.queue)} waiting; "
            "retry in a few seconds")


# Request bodies. extra="forbid": a misspelt or unknown field is an error, never ignored.

class UnitRef(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "5" is no length, true no 1
    layer: int = 0
    state: Literal["h", "c"] = "h"
    """h, or an LSTM's cell state c (shown as tanh(c))."""
    unit: int = 0


class GenerateBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "5" is no length, true no 1
    prompt: str = ""
    length: int = 200
    """Characters to generate (fewer in lines mode, where <eos> ends the line)."""
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    argmax: bool = False
    seed: int | None = None
    """None: a random seed, reported in the last record."""
    top: int = 5
    """Alternatives per character."""
    watch: UnitRef | None = None
    """A unit whose activation each record carries as "act"."""


class UnitsBody(UnitRef):
    text: str
    rank: str | None = None
    """A feature (see FEATURES): rank the units by it and show the best one."""
    top: int = 10
    """Units in the ranking."""


def create_app(model, vocab, meta: dict, limits: Limits | None = None,
               allow_hosts: Collection[str] = ()) -> FastAPI:
    """The app for one loaded language model (in eval mode). ``/docs`` and the OpenAPI schema
    are off: the page is the interface, and it must not load anything from a CDN.

    ``allow_hosts``: the names and addresses requests may call the server by, besides
    localhost and loopback addresses (the server's own address belongs here when it listens
    on one interface); "*" allows any, which leaves the server open to DNS rebinding."""
    limits = limits or Limits()
    allowed = allowed_names(allow_hosts)
    app = FastAPI(title="rnnkit", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.slots = Slots(limits.max_concurrent, limits.max_waiting)
    app.state.pool = ThreadPoolExecutor(limits.max_concurrent, thread_name_prefix="rnnkit")
    app.state.batcher = Batcher(model, vocab, limits.timeout_s, app.state.slots.leave)
    add_error_handlers(app, limits)
    app.add_middleware(HostCheck, allowed=allowed)  # added last: the outermost, it runs first
    add_routes(app, Server(model, vocab, meta, limits, app.state))
    return app


class BodyLimit:
    """Refuse a request whose declared body is too large before reading any of it (a plain
    ASGI middleware: Starlette's decorator form would buffer the streamed responses)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            size = headers.get(b"content-length", b"0")
            if b"transfer-encoding" in headers:  # a chunked body has no size to check
                response = error(411, "send the body with a Content-Length header")
                return await response(scope, receive, send)
            if not size.isdigit() or int(size) > self.limit:
                response = error(413, f"the request body must be at most {self.limit} bytes")
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


# host[:port] or [IPv6]:port, as in a Host header (RFC 9110 7.2; a port may be empty)
HOST = re.compile(r"(?:\[(?P<ip6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9._~-]+))(?::[0-9]{0,5})?")


def host_name(value: str) -> str | None:
    """The host a Host header (or an --allow-host value) names, lower case, without its port,
    IPv6 brackets or final dot: "[::1]:8000" -> "::1", "MyBox.lan.:80" -> "mybox.lan"; None
    when it is not host[:port]."""
    value = value.strip().lower()
    if value.count(":") > 1 and not value.startswith("["):
        value = f"[{value}]"  # a bare IPv6 address
    match = HOST.fullmatch(value)
    if match is None:
        return None
    if match["ip6"]:
        try:
            return str(ipaddress.IPv6Address(match["ip6"]))
        except ValueError:
            return None
    return match["name"].rstrip(".") or None


def is_loopback_name(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback  # 127.0.0.0/8 and ::1
    except ValueError:
        return False


def allowed_names(allow_hosts: Collection[str]) -> frozenset[str]:
    """``allow_hosts`` as ``HostCheck`` compares them (see ``host_name``), "*" kept; an error
    for a value that no Host header could match."""
    names = set()
    for value in allow_hosts:
        name = "*" if value.strip() == "*" else host_name(value)
        if name is None:
            raise RnnkitError(f"--allow-host {value!r} is not a host name or address; give the "
                              "name clients use, e.g. --allow-host mybox.lan")
        names.add(name)
    return frozenset(names)


class HostCheck:
    """Refuse every request (page, API, websocket) whose Host header does not name this server.

    DNS rebinding: a page on a name the attacker owns re-points that name at 127.0.0.1, and
    the browser, taking the server for the page's own origin, lets the page use it and read the
    answers. The browser still sends the attacker's name as the Host, and that is refused here,
    before anything else reads the request. (Starlette's TrustedHostMiddleware cuts "[::1]:8000"
    at its first colon and cannot say "any of 127.0.0.0/8".)"""

    def __init__(self, app, allowed: frozenset[str]):
        self.app, self.allowed = app, allowed

    def allows(self, hosts: list[str]) -> bool:
        if "*" in self.allowed:
            return True
        name = host_name(hosts[0]) if len(hosts) == 1 else None
        return name is not None and (name in self.allowed or is_loopback_name(name))

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        hosts = [value.decode("latin-1") for key, value in scope["headers"] if key == b"host"]
        if self.allows(hosts):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":  # closed before the handshake: the server sends 403
            return await send({"type": "websocket.close", "code": 1008})
        response = error(403, refused_host_message(hosts))
        await response(scope, receive, send)


def refused_host_message(hosts: list[str]) -> str:
    what = (f"Host {hosts[0][:100]!r} is not allowed" if len(hosts) == 1 else
            "a request without a Host header is not allowed" if not hosts else
            "a request with more than one Host header is not allowed")
    return (f"{what} (a guard against DNS rebinding); to answer requests addressed to another "
            "name, start rnnkit serve with --allow-host NAME")


def add_error_handlers(app: FastAPI, limits: Limits) -> None:
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)

    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return error(exc.status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_body(request, exc: RequestValidationError):
        return error(422, validation_message(exc.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail).lower())

    @app.exception_handler(Exception)
    async def server_error(request, exc: Exception):
        return error(500, f"internal error ({type(exc).__name__}: {exc})")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def validation_message(errors) -> str:
    """One sentence for pydantic's first complaint about a request body."""
    err = errors[0]
    where = ".".join(str(part) for part in err["loc"][1:])
    if err["type"] == "json_invalid":
        return f"the body is not valid JSON ({err.get('ctx', {}).get('error', 'parse error')})"
    if err["type"] == "extra_forbidden":
        return f"unknown field {where!r}; see GET /api/info for the accepted fields"
    if not where or err["type"] == "model_attributes_type":
        return 'the body must be a JSON object, e.g. {"prompt": "The ", "length": 200}'
    return f"{where}: {err['msg'][0].lower()}{err['msg'][1:]}"


class Server:
    """What the routes share: the model, its vocabulary, the limits, the slots, the batcher
    and the worker pool."""

    def __init__(self, model, vocab, meta, limits: Limits, shared):
        self.model, self.vocab, self.meta, self.limits = model, vocab, meta, limits
        self.slots, self.pool, self.batcher = shared.slots, shared.pool, shared.batcher
        self.states = state_names(model)
        self.page = files("rnnkit.serve").joinpath("page.html").read_text(encoding="utf-8")

    def info(self) -> dict:
        c = self.model.config
        return {"model": {"cell": c.cell, "layers": c.num_layers, "hidden_size": c.hidden_size,
                          "vocab_size": c.vocab_size, "step": self.meta.get("step"),
                          "mode": "lines" if EOS in self.vocab.specials else "stream"},
                "states": list(self.states), "features": list(FEATURES),
                "limits": asdict(self.limits),
                "load": {"running": self.slots.running, "waiting": len(self.slots.queue)},
                "fields": {"generate": list(GenerateBody.model_fields),
                           "units": list(UnitsBody.model_fields)}}

    def check_unit(self, ref: UnitRef) -> tuple[int, int, int]:
        c = self.model.config
        if not 0 <= ref.layer < c.num_layers:
            raise ApiError(422, f"layer must be in [0, {c.num_layers - 1}], got {ref.layer}")
        if ref.state not in self.states:
            raise ApiError(422, f"state must be one of {', '.join(self.states)} for a "
                                f"{c.cell} model, got {ref.state!r}")
        if not 0 <= ref.unit < c.hidden_size:
            raise ApiError(422, f"unit must be in [0, {c.hidden_size - 1}], got {ref.unit}")
        return ref.layer, self.states.index(ref.state), ref.unit

    def sampling(self, body: GenerateBody) -> SamplingConfig:
        lim = self.limits
        if not 1 <= body.length <= lim.max_length:
            raise ApiError(422, f"length must be in [1, {lim.max_length}], got {body.length}")
        if len(body.prompt) > lim.max_prompt_chars:
            raise ApiError(422, f"prompt must be at most {lim.max_prompt_chars} characters, "
                                f"got {len(body.prompt)}")
        if not 1 <= body.top <= 20:
            raise ApiError(422, f"top must be in [1, 20], got {body.top}")
        if body.seed is not None and not 0 <= body.seed < 2**63:
            raise ApiError(422, f"seed must be in [0, 2**63), got {body.seed}")
        try:
            check_text(self.vocab, body.prompt, "prompt", newline_ends_line=False)
            # the sampler's own checks, worded for flags: name the JSON fields instead
            return SamplingConfig(body.temperature, body.top_k, body.top_p, body.argmax)
        except RnnkitError as e:
            message = str(e).replace("--top-", "top_").replace("--", "").split("; use e.g.")[0]
            raise ApiError(422, message) from None

    async def generate(self, body: GenerateBody) -> ClosingStream:
        cfg = self.sampling(body)
        watch = self.check_unit(body.watch) if body.watch else None
        seed = secrets.randbelow(2**31) if body.seed is None else body.seed
        await self.slots.enter(self.limits.queue_timeout_s)
        loop, queue, stop = asyncio.get_running_loop(), asyncio.Queue(), threading.Event()

        def push(item) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop is gone: nobody is listening
                stop.set()

        self.batcher.submit(Job(body.prompt, body.length, cfg, seed, body.top, watch, push,
                                stop))
        return ClosingStream(stream(queue, stop), media_type=NDJSON,
                             headers={"Cache-Control": "no-store"})

    async def units(self, body: UnitsBody) -> dict:
        limit = self.limits.max_prompt_chars + self.limits.max_length
        if len(body.text) > limit:
            raise ApiError(422, f"text must be at most {limit} characters, got {len(body.text)}")
        if not 1 <= body.top <= 100:
            raise ApiError(422, f"top must be in [1, 100], got {body.top}")
        if body.rank is not None and body.rank not in FEATURES:
            raise ApiError(422, f"rank must be one of {', '.join(FEATURES)}, got {body.rank!r}")
        if not body.text:
            raise ApiError(422, "text is empty; send some text to read")
        ref = self.check_unit(body)
        try:
            check_text(self.vocab, body.text, "text")
        except RnnkitError as e:
            raise ApiError(422, str(e)) from None
        await self.slots.enter(self.limits.queue_timeout_s)
        future = self.pool.submit(self.analyse, body, ref)
        future.add_done_callback(lambda _: self.slots.leave())
        return await asyncio.wrap_future(future)

    def analyse(self, body: UnitsBody, ref: tuple[int, int, int]) -> dict:
        acts = collect(self.model, self.vocab, body.text)
        ranking = rank_units(acts, body.rank, body.top) if body.rank else []
        layer, s, unit = ref
        if ranking:  # show the best unit
            best = ranking[0]
            layer, s, unit = best["layer"], self.states.index(best["state"]), best["unit"]
        note = (f"{body.rank} does not vary over this text, so no unit can track it"
                if body.rank and not ranking else None)
        return {"layer": layer, "state": self.states[s], "unit": unit, "note": note,
                "activations": [round(float(v), 4) for v in acts.values[:, layer, s, unit]],
                "probs": [round(float(p), 4) for p in acts.probs],
                "ranking": ranking, "feature": body.rank}


class ClosingStream(StreamingResponse):
    """Closes its body iterator however the response ends, so that a client that goes away
    stops its generation at once, not when the garbage collector gets to the iterator."""

    async def stream_response(self, send) -> None:
        try:
            await super().stream_response(send)
        finally:
            await self.body_iterator.aclose()


async def stream(queue: asyncio.Queue, stop: threading.Event):
    """NDJSON lines, sent as soon as they are ready: whatever has piled up goes out as one
    chunk, so a slow reader costs fewer writes, never more latency."""
    try:
        while True:
            items = [await queue.get()]
            while not queue.empty():
                items.append(queue.get_nowait())
            lines = [json.dumps(i, ensure_ascii=False) + "\n" for i in items if i is not END]
            if lines:
                yield "".join(lines)
            if items[-1] is END:
                return
    finally:
        stop.set()  # the client left (or all is sent): the worker stops at its next character


def add_routes(app: FastAPI, server: Server) -> None:
    headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
               "Cache-Control": "no-store"}

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse(server.page, headers=headers)

    @app.get("/api/health")
    async def health():
        return {"status": "ok"}

    @app.get("/api/info")
    async def info():
        return server.info()

    @app.post("/api/generate")
    async def generate(body: GenerateBody):
        return await server.generate(body)

    @app.post("/api/units")
    async def units(body: UnitsBody):
        return await server.units(body)
