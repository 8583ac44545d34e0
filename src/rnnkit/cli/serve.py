"""Serve a language model in the browser: live samples, probabilities, hidden units.

A page to sample from the model as it writes, each character coloured by its probability
(the alternatives on hover), and the text coloured by any hidden unit's activation.

examples:
  rnnkit serve runs/shakespeare                  # then open http://127.0.0.1:8000/
  rnnkit serve runs/shakespeare --port 0         # any free port (printed)
  rnnkit serve best.pt --max-concurrent 2 --timeout 30

The page loads nothing from the network. API: GET /api/health; POST /api/generate with
{"prompt", "length", "temperature", "top_k", "top_p", "seed"} streams NDJSON, one record per
character ({"text", "prob", "top"}), then {"done": true, ...}; POST /api/units reads a text
and returns one unit's activations or the units ranked by a feature. Errors are JSON,
{"error": "..."}. Needs the serve extra: pip install -e ".[serve]".
"""

from __future__ import annotations

import ipaddress
import socket
import sys

import torch

from ..api import load, require_lm
from ..errors import RnnkitError
from ..serve.units import require_recurrent_chars


def add_arguments(p) -> None:
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT",
                   help="a run folder (uses best.pt, else last.pt) or a .pt/.safetensors file")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: loopback only, 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free one)")
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
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))


def run(args) -> int:
    try:
        import uvicorn

        from ..serve.app import Limits, create_app
    except ImportError as e:
        raise RnnkitError(f"rnnkit serve needs the serve extra ({e.name} is missing); "
                          'install it with pip install -e ".[serve]"') from None
    limits = Limits(max_prompt_chars=args.max_prompt_chars, max_length=args.max_length,
                    max_concurrent=args.max_concurrent, max_waiting=args.max_waiting,
                    queue_timeout_s=args.timeout, timeout_s=args.timeout)
    if args.threads < 1:
        raise RnnkitError(f"--threads must be >= 1, got {args.threads}")
    model, vocab, meta = load(args.checkpoint, args.device)
    require_lm(meta, args.checkpoint)
    require_recurrent_chars(model, vocab, args.checkpoint)
    sock = bind(args.host, args.port)
    torch.set_num_threads(args.threads)
    app = create_app(model, vocab, meta, limits)
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
    if not is_loopback(host):
        print(f"rnnkit: warning: listening on {host}: anyone who can reach this machine can "
              "use the model", file=sys.stderr)
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


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
