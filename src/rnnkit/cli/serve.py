"""Serve a language model in the browser: live samples, probabilities, hidden units.

A page to sample from the model as it writes, each character coloured by its probability
(the alternatives on hover), and the text coloured by any hidden unit's activation.

examples:
  rnnkit serve runs/shakespeare                  # then open http://127.0.0.1:8000/
  rnnkit serve runs/shakespeare --port 0         # any free port (printed)
  rnnkit serve best.pt --max-concurrent 2 --timeout 30
  rnnkit serve runs/shakespeare --host 0.0.0.0 --allow-host mybox.lan   # for the whole LAN

The page loads nothing from the network. API: GET /api/health; POST /api/generate with
{"prompt", "length", "temperature", "top_k", "top_p", "seed"} streams NDJSON, one record per
character ({"text", "prob", "top"}), then {"done": true, ...}; POST /api/units reads a text
and returns one unit's activations or the units ranked by a feature. Errors are JSON,
{"error": "..."}. A request whose Host header is not localhost, a loopback address, the
address the server listens on or an --allow-host name gets 403 (a guard against DNS
rebinding). Needs the serve extra: pip install -e ".[serve]".
"""

from __future__ import annotations

import ipaddress
import socket
import sys

from ..api import load, require_lm
from ..errors import RnnkitError
from ..limits import set_threads
from ..serve.units import require_recurrent_chars
from ..training.precision import DEVICE_HELP, DEVICES


def add_arguments(p) -> None:
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT",
                   help="a run folder (uses best.pt, else last.pt) or a .pt/.safetensors file")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: loopback only, 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free one)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests addressed to NAME (repeatable), e.g. the name "
                        "clients use for this machine; others get 403, except localhost, "
                        "loopback addresses and the --host address. '*': any name (unsafe: "
                        "any web page a browser here opens can then use the server, through "
                        "DNS rebinding)")
    p.add_argument("--max-length", type=int, default=2000,
                   help="most characters one request may generate (default 2000)")
    p.add_argument("--max-prompt-chars", type=int, default=4000,
                   help="longest prompt, in characters (default 4000)")
    p.add_argument("--max-concurrent", type=int, default=32,
                   help="generations running at once, stepped together as one batch "
                        "(default 32)")
    p.add_argument("--max-waiting", type=int, default=64,
                   help="requests queued for a free generation; more get 503 (default 64)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds a generation may run, and a request may wait (default 60)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: as fast as 2 for the playground's steps on a "
                        "2-core machine, and it leaves the server a core)")
    p.add_argument("--device", default="cpu", choices=DEVICES,
                   help=f"{DEVICE_HELP} (default: cpu)")


def run(args) -> int:
    try:
        import uvicorn

        from ..serve.app import Limits, allowed_names, create_app
    except ImportError as e:
        raise RnnkitError(f"rnnkit serve needs the serve extra ({e.name} is missing); "
                          'install it with pip install -e ".[serve]"') from None
    limits = Limits(max_prompt_chars=args.max_prompt_chars, max_length=args.max_length,
                    max_concurrent=args.max_concurrent, max_waiting=args.max_waiting,
                    queue_timeout_s=args.timeout, timeout_s=args.timeout)
    allowed_names(args.allow_host)  # a bad --allow-host stops here, before the model loads
    if args.threads < 1:
        raise RnnkitError(f"--threads must be >= 1, got {args.threads}")
    set_threads(args.threads)
    model, vocab, meta = load(args.checkpoint, args.device)
    require_lm(meta, args.checkpoint)
    require_recurrent_chars(model, vocab, args.checkpoint)
    warning = exposure_warning(args.host, args.allow_host)
    if warning:
        print(f"rnnkit: warning: {warning}", file=sys.stderr)
    sock = bind(args.host, args.port)
    app = create_app(model, vocab, meta, limits, allowed_hosts(args.host, args.allow_host))
    host, port = sock.getsockname()[:2]
    print(f"serving {args.checkpoint} on http://{url_host(host)}:{port}/ (Ctrl-C to stop)",
          flush=True)
    config = uvicorn.Config(app, log_level="warning", timeout_keep_alive=5,
                            timeout_graceful_shutdown=5,
                            limit_concurrency=limits.max_concurrent + limits.max_waiting + 32)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or one clear error (port taken, bad address, no permission)."""
    if not 0 <= port <= 65535:
        raise RnnkitError(f"--port must be in [0, 65535], got {port}")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise RnnkitError(f"cannot listen on {host}:{port} ({e.strerror or e}); pick another "
                          "--port (0: any free one) or --host") from None
    return sock


def allowed_hosts(host: str, allow: list[str]) -> list[str]:
    """The names requests may address the server by, besides localhost and loopback addresses:
    the address it listens on, unless that is all interfaces (whose names this machine cannot
    list), and the --allow-host names."""
    if is_all_interfaces(host):
        return allow
    return [host.split("%")[0], *allow]  # fe80::1%eth0: a Host header carries no zone


def exposure_warning(host: str, allow: list[str]) -> str | None:
    """What a user should know about who can reach the server, or None."""
    notes = []
    if not is_loopback(host):
        notes.append(f"listening on {host}: anyone who can reach this machine can use the "
                     "model")
    if is_all_interfaces(host) and not allow:
        notes.append("requests are answered only when addressed to localhost or a loopback "
                     "address: add --allow-host NAME with the name (or address) clients use "
                     "to reach this machine")
    if "*" in allow:
        notes.append("--allow-host '*' turns the Host check off: any web page opened on a "
                     "machine that can reach the server can use it, through DNS rebinding")
    return "; ".join(notes) or None


def is_all_interfaces(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified  # 0.0.0.0 or ::
    except ValueError:
        return host == ""


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
