"""rnnkit serve and rnnkit visualize: the HTTP contract, its limits, the hidden-unit analysis
and the static page."""

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit.api import load, sample_model
from rnnkit.cli import main
from rnnkit.cli.serve import allowed_hosts, exposure_warning
from rnnkit.data.vocab import BOS, EOS, CharVocab
from rnnkit.decoding import SamplingConfig
from rnnkit.errors import RnnkitError
from rnnkit.models.char_lm import CharLM, CharLMConfig
from rnnkit.serve import units
from rnnkit.serve.app import Limits, create_app, host_name
from rnnkit.serve.generation import END, Batcher, Job
from rnnkit.serve.units import Activations, collect, layer_values, rank_units

from .test_cli import error_of

with warnings.catch_warnings():  # starlette prefers the httpx2 fork; httpx works the same
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

FIXTURE = Path(__file__).parent / "fixtures" / "hamlet_excerpt.txt"
TINY = ["--preset", "tiny", "--max-steps", "20", "--eval-every", "20", "--seq-length", "16"]


def trained_run(tmp_path_factory) -> Path:
    """A tiny language model trained on Hamlet for a few steps; trained once per test session
    and shared with the browser tests."""
    run = tmp_path_factory.getbasetemp() / "serve-tiny-run"
    if not (run / "best.pt").is_file():
        assert main(["train", "--data", str(FIXTURE), "--out", str(run), *TINY]) == 0
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def loaded(run_dir):
    return load(run_dir)


def local(app) -> TestClient:
    """A test client that addresses the app as localhost (other names get 403)."""
    return TestClient(app, base_url="http://localhost:8000")


@pytest.fixture(scope="module")
def client(loaded):
    return local(create_app(*loaded))


class SlowLM(CharLM):
    """The same model, taking ``delay`` seconds more per call and per step: generations last
    long enough to be watched, interrupted and timed out. ``rows`` records each step's batch."""

    delay = 0.005
    rows: list[int] = []

    def forward(self, tokens, state=None):
        time.sleep(self.delay)
        return super().forward(tokens, state)

    def stepper(self, precision="fp32"):
        step = super().stepper(precision)

        def slow_step(tokens, state):
            self.rows.append(tokens.shape[0])
            time.sleep(self.delay)
            return step(tokens, state)
        return slow_step


def slowed(model, vocab, meta, delay=0.005):
    slow = SlowLM(model.config)
    slow.load_state_dict(model.state_dict())
    slow.delay, slow.rows = delay, []
    return slow.eval(), vocab, meta


@contextmanager
def serving(app):
    """The app on a real uvicorn server on a free loopback port; yields its base URL."""
    import uvicorn
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def ndjson(response) -> list[dict]:
    return [json.loads(line) for line in response.iter_lines() if line]


def generate(client, **body) -> list[dict]:
    with client.stream("POST", "/api/generate", json=body) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("application/x-ndjson")
        return ndjson(r)


# ------------------------------------------------------------------------ the HTTP contract

def test_health_answers_ok(client):
    r = client.get("/api/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_page_is_self_contained(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    for needle in ('id="prompt"', 'id="temperature"', 'id="top_k"', 'id="top_p"',
                   'id="length"', 'id="seed"', 'id="output"', 'id="unit-text"', "/api/generate"):
        assert needle in page
    # nothing that could reach another host: no absolute or protocol-relative URL, no
    # external script, stylesheet, font or image
    assert "http://" not in page and "https://" not in page and '"//' not in page
    assert "<script src" not in page and "@import" not in page and "url(" not in page
    assert "connect-src 'self'" in r.headers["content-security-policy"]


def test_docs_and_schema_are_off(client):
    for path in ("/docs", "/redoc", "/openapi.json"):
        r = client.get(path)
        assert r.status_code == 404 and r.json() == {"error": "not found"}


def test_no_route_reads_a_path_from_the_request(client):
    assert all("{" not in route.path for route in client.app.routes)
    r = client.post("/api/generate", json={"prompt": "a", "checkpoint": "/etc/passwd"})
    assert r.status_code == 422 and "unknown field 'checkpoint'" in r.json()["error"]
    r = client.post("/api/units", json={"text": "a", "file": "/etc/passwd"})
    assert r.status_code == 422 and "unknown field 'file'" in r.json()["error"]


# ------------------------------------------------------- Host check (DNS rebinding), origins

def ask(client, host: str) -> list[int]:
    """The statuses of the page, /api/info and a short generation, asked for as ``host``."""
    headers = {"host": host}
    return [client.get("/", headers=headers).status_code,
            client.get("/api/info", headers=headers).status_code,
            client.post("/api/generate", json={"length": 3}, headers=headers).status_code]


def test_requests_addressed_to_another_host_are_refused_on_every_route(client):
    assert ask(client, "evil.example") == [403, 403, 403]
    r = client.post("/api/generate", json={"length": 3}, headers={"host": "evil.example:8000"})
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert "Host 'evil.example:8000' is not allowed" in error and "--allow-host NAME" in error
    for route in client.app.routes:  # whatever routes there are
        for method in route.methods:
            r = client.request(method, route.path, headers={"host": "evil.example"})
            assert r.status_code == 403, (method, route.path)
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect("/", headers={"host": "evil.example"}):
            pass
    assert refused.value.code == 1008


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "LocalHost:8000",
                                  "127.0.0.1:8000", "127.0.0.1:54321", "127.8.9.10", "[::1]:8000",
                                  "[::1]", "localhost.:8000"])
def test_requests_addressed_to_localhost_or_loopback_are_served(client, host):
    assert ask(client, host) == [200, 200, 200]


def test_allow_host_admits_its_names_and_no_others(loaded):
    client = local(create_app(*loaded, allow_hosts=["mybox.lan", "192.168.1.5", "[fe80::1]"]))
    for host in ("mybox.lan", "MyBox.LAN:8000", "192.168.1.5:8000", "[fe80::1]:80", "localhost"):
        assert ask(client, host) == [200, 200, 200], host
    for host in ("other.lan", "mybox.lan.evil.example", "evil.example", "192.168.1.6:8000",
                 "mybox.lan@evil.example", "", "mybox.lan:8000:1"):
        assert ask(client, host) == [403, 403, 403], host
    anyone = local(create_app(*loaded, allow_hosts=["*"]))
    assert ask(anyone, "evil.example") == ask(anyone, "x:1") == [200, 200, 200]
    with pytest.raises(RnnkitError, match="--allow-host 'a b' is not a host name"):
        create_app(*loaded, allow_hosts=["a b"])


@pytest.mark.parametrize("value, name", [
    ("[::1]:8000", "::1"), ("[0:0::1]", "::1"), ("::1", "::1"), ("MyBox.LAN.:80", "mybox.lan"),
    ("127.0.0.1:", "127.0.0.1"), ("evil.example:80:80", None), ("a b", None), ("", None),
    ("[evil.example]", None), ("user@evil.example", None), ("evil.example/x", None),
])
def test_host_name_strips_port_brackets_and_case(value, name):
    assert host_name(value) == name


def get_without_a_test_client(app, headers: list) -> int:
    """GET /api/info through the ASGI interface with exactly these headers (a test client
    always adds a Host); returns the status."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.0", "method": "GET",
             "scheme": "http", "path": "/api/info", "raw_path": b"/api/info",
             "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"]


def test_a_request_without_one_host_header_is_refused(loaded):
    app = create_app(*loaded)
    assert get_without_a_test_client(app, [(b"host", b"localhost:8000")]) == 200
    assert get_without_a_test_client(app, []) == 403
    assert get_without_a_test_client(app, [(b"host", b"localhost"), (b"host", b"evil.example")
                                           ]) == 403


def test_pages_from_other_origins_cannot_use_the_api(client):
    """What a page elsewhere can send without asking first (a form, a text/plain fetch) is
    refused, and no answer carries CORS headers, so the browser lets the page ask for nothing
    else and read no answer."""
    evil = {"origin": "http://evil.example"}
    for content_type, body in (("text/plain", b'{"length": 5}'),
                               ("application/x-www-form-urlencoded", b"length=5"),
                               ("multipart/form-data; boundary=x", b"--x--\r\n")):
        r = client.post("/api/generate", content=body,
                        headers={**evil, "content-type": content_type})
        assert r.status_code == 422 and "must be a JSON object" in r.json()["error"], r.text
    preflight = client.options("/api/generate", headers={
        **evil, "access-control-request-method": "POST",
        "access-control-request-headers": "content-type"})
    assert preflight.status_code == 405
    for r in (preflight, client.get("/api/info", headers=evil)):
        assert not [h for h in r.headers if h.startswith("access-control-")]


def test_serve_answers_to_its_own_address_and_says_what_all_interfaces_need():
    assert allowed_hosts("127.0.0.1", []) == ["127.0.0.1"]
    assert allowed_hosts("192.168.1.5", ["mybox.lan"]) == ["192.168.1.5", "mybox.lan"]
    assert allowed_hosts("fe80::1%eth0", []) == ["fe80::1"]
    assert allowed_hosts("0.0.0.0", ["mybox.lan"]) == allowed_hosts("::", ["mybox.lan"]) == [
        "mybox.lan"]
    assert exposure_warning("127.0.0.1", ["mybox.lan"]) is None
    assert "anyone who can reach" in exposure_warning("192.168.1.5", [])
    assert "add --allow-host NAME" in exposure_warning("0.0.0.0", [])
    assert "add --allow-host" not in exposure_warning("0.0.0.0", ["mybox.lan"])
    assert "DNS rebinding" in exposure_warning("127.0.0.1", ["*"])


def test_generate_streams_records_that_match_rnnkit_sample(client, loaded):
    model, vocab, _ = loaded
    records = generate(client, prompt="Ber", length=60, temperature=0.8, top_k=20, seed=7)
    chars, done = records[:-1], records[-1]
    assert done["done"] is True and done["chars"] == 60 and done["seed"] == 7
    assert len(chars) == 60
    for r in chars:
        assert len(r["text"]) == 1 and 0 < r["prob"] <= 1
        probs = [p for _, p in r["top"]]
        assert len(r["top"]) == 5 and probs == sorted(probs, reverse=True)
        if r["text"] in dict(r["top"]):
            assert dict(r["top"])[r["text"]] == r["prob"]
    # the same seed and settings give exactly what rnnkit sample prints
    expected = sample_model(model, vocab, "Ber", 60, seed=7, temperature=0.8, top_k=20)[0]
    assert "Ber" + "".join(r["text"] for r in chars) == expected


def test_lines_mode_generation_ends_at_the_end_of_the_line():
    vocab = CharVocab(list("abc de"), (BOS, EOS))
    torch.manual_seed(0)
    model = CharLM(CharLMConfig(vocab_size=len(vocab), hidden_size=16, num_layers=1)).eval()
    client = local(create_app(model, vocab, {"step": 0}))
    assert client.get("/api/info").json()["model"]["mode"] == "lines"
    records = generate(client, prompt="ab", length=500, seed=1)
    text = "".join(r["text"] for r in records[:-1])
    # an untrained model picks <eos> about once in 8 steps: the line ends long before 500
    assert records[-1]["chars"] == len(text) < 500 and set(text) <= set("abc de")
    r = client.post("/api/generate", json={"prompt": "a\nb"})  # a prompt is one line
    assert r.status_code == 422 and "outside the model's vocabulary: '\\n'" in r.json()["error"]
    reply = client.post("/api/units", json={"text": "ab c\nde\n"}).json()
    assert len(reply["activations"]) == len("ab c\nde\n")


def test_stream_is_sent_as_it_is_generated(loaded):
    import httpx
    app = create_app(*slowed(*loaded, delay=0.01))
    with serving(app) as url, httpx.Client(timeout=30) as http:
        t0 = time.monotonic()
        arrivals = []
        with http.stream("POST", f"{url}/api/generate", json={"length": 150, "seed": 1}) as r:
            for line in r.iter_lines():
                if line:
                    arrivals.append((time.monotonic() - t0, json.loads(line)))
    first_char = next(t for t, rec in arrivals if "text" in rec)
    last = arrivals[-1][0]
    assert arrivals[-1][1]["done"] and last >= 1.5  # 150 steps of 10 ms at least
    assert first_char < last / 4  # the first character came long before the end
    assert len({round(t, 2) for t, _ in arrivals}) > 20  # in many pieces, not one


@pytest.mark.parametrize("body, status, message", [
    ({"length": 0}, 422, "length must be in [1, 2000], got 0"),
    ({"length": 2001}, 422, "length must be in [1, 2000], got 2001"),
    ({"prompt": "x" * 4001}, 422, "prompt must be at most 4000 characters, got 4001"),
    ({"temperature": 0}, 422, "temperature must be > 0"),
    ({"top_k": 0}, 422, "top_k must be >= 1, got 0"),
    ({"top_p": 1.5}, 422, "top_p must be in (0, 1]"),
    ({"prompt": "Ber\u00e9\u4e2d"}, 422, "outside the model's vocabulary: '\u00e9\u4e2d'"),
    ({"length": "many"}, 422, "length: input should be a valid integer"),
    # no silent conversions: a string is no number, true no length, "yes" no answer
    ({"length": "5"}, 422, "length: input should be a valid integer"),
    ({"length": True}, 422, "length: input should be a valid integer"),
    ({"argmax": "yes"}, 422, "argmax: input should be a valid boolean"),
    ({"seed": -1}, 422, "seed must be in [0, 2**63), got -1"),
    ({"top": 0}, 422, "top must be in [1, 20], got 0"),
    ({"watch": {"layer": 3}}, 422, "layer must be in [0, 0], got 3"),
    ({"watch": {"state": "x"}}, 422, "watch.state: input should be 'h' or 'c'"),
])
def test_bad_generate_requests_get_one_clear_json_error(client, body, status, message):
    r = client.post("/api/generate", json=body)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    assert message in r.json()["error"], r.json()


def test_malformed_bodies_get_json_errors(client):
    r = client.post("/api/generate", content=b"{oops", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["error"]
    r = client.post("/api/generate", json=[1, 2])
    assert r.status_code == 422 and "must be a JSON object" in r.json()["error"]
    r = client.delete("/api/health")
    assert r.status_code == 405 and r.json() == {"error": "method not allowed"}


def test_oversized_body_is_refused_before_it_is_read(loaded):
    client = local(create_app(*loaded, Limits(max_body_bytes=1000)))
    r = client.post("/api/generate", json={"prompt": "a" * 2000})
    assert r.status_code == 413 and "at most 1000 bytes" in r.json()["error"]


def test_busy_server_says_503_and_frees_the_slot_when_a_client_leaves(loaded):
    import httpx
    app = create_app(*slowed(*loaded), Limits(max_concurrent=1, max_waiting=0))
    with serving(app) as url, httpx.Client(timeout=30) as http:
        with http.stream("POST", f"{url}/api/generate", json={"length": 2000}) as first:
            lines = first.iter_lines()  # kept: dropping it would close the connection
            assert json.loads(next(lines))["text"]  # the one slot is taken, and streaming
            r = http.post(f"{url}/api/generate", json={"length": 5})
            assert r.status_code == 503 and r.json()["error"].startswith("busy: 1 generation")
        # the first client hung up after one line: its generation stops and frees the slot
        deadline = time.monotonic() + 5
        while http.get(f"{url}/api/info").json()["load"]["running"] and (
                time.monotonic() < deadline):
            time.sleep(0.05)
        r = http.post(f"{url}/api/generate", json={"length": 5})
        assert r.status_code == 200 and r.text.strip().splitlines()[-1].startswith('{"done"')


def test_waiting_requests_are_served_in_turn(loaded):
    import httpx
    app = create_app(*slowed(*loaded, delay=0.002), Limits(max_concurrent=1, max_waiting=4))
    with serving(app) as url, httpx.Client(timeout=30) as http:
        results = [None] * 3

        def ask(i):
            results[i] = http.post(f"{url}/api/generate", json={"length": 40, "seed": i})
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert [r.status_code for r in results] == [200, 200, 200]
    assert all(json.loads(r.text.splitlines()[-1])["chars"] == 40 for r in results)


def test_a_generation_past_its_timeout_ends_with_an_error_record(loaded):
    client = local(create_app(*slowed(*loaded), Limits(timeout_s=0.2)))
    records = generate(client, length=2000)
    assert "timed out after 0.2 s" in records[-1]["error"]
    assert 0 < len(records) - 1 < 2000


# ------------------------------------------------------------------------ batched generation

class Collected:
    """A Job whose records are kept; ``stop_after`` records, it stops listening (a client
    leaving); ``then(n, f)`` calls f once after its n-th record."""

    def __init__(self, prompt="", length=40, seed=0, watch=None, stop_after=None, then=None,
                 **sampling):
        self.records, self.finished, self.then = [], threading.Event(), then
        self.stop_after = stop_after
        self.job = Job(prompt, length, SamplingConfig(**sampling), seed, 5, watch, self.push,
                       threading.Event())

    def push(self, item):
        if item is END:
            self.finished.set()
            return
        self.records.append(item)
        n = len(self.records)
        if self.stop_after is not None and n >= self.stop_after:
            self.job.stop.set()
        if self.then is not None and n == self.then[0]:
            self.then[1]()

    def text(self) -> str:
        return self.job.prompt + "".join(r["text"] for r in self.records if "text" in r)


def run_batch(model, vocab, jobs, timeout_s=60.0):
    """Submit ``jobs`` (Collected) to one Batcher at once; wait for every one to end."""
    ended = []
    batcher = Batcher(model, vocab, timeout_s, lambda: ended.append(1))
    for c in jobs:
        batcher.submit(c.job)
    for c in jobs:
        assert c.finished.wait(60)
    return batcher, ended


def alone(model, vocab, c: Collected) -> str:
    cfg = c.job.cfg
    return sample_model(model, vocab, c.job.prompt, c.job.length, seed=c.job.seed,
                        temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p)[0]


def test_concurrent_generations_step_as_one_batch_and_each_gets_its_own_text(loaded):
    model, vocab, _ = slowed(*loaded, delay=0.002)
    jobs = [Collected("Ber", 60, seed=1), Collected("", 60, seed=2, temperature=0.6),
            Collected("The", 45, seed=3, top_k=5), Collected("Ber", 60, seed=4),
            Collected("", 30, seed=5, top_p=0.8), Collected("a", 60, seed=6, temperature=1.4)]
    _, ended = run_batch(model, vocab, jobs)
    assert max(model.rows) == len(jobs)  # all six rows in one step
    assert len(model.rows) < sum(c.job.length for c in jobs) / 3  # not one step per character
    assert len(ended) == len(jobs)
    for c in jobs:
        assert c.records[-1]["done"] and c.records[-1]["chars"] == c.job.length
        assert c.text() == alone(*loaded[:2], c), c.job


def test_rows_join_and_leave_mid_batch_without_disturbing_the_others(loaded):
    """B joins after A's 10th character; C's client leaves after 5; A and B still get what
    they get alone, and B's watched unit reads the same as when B runs by itself."""
    model, vocab, _ = loaded
    watch = (0, 1, 3)  # the c of unit 3
    late = Collected("Ber", 50, seed=8, watch=watch, temperature=0.8)
    batcher = Batcher(model, vocab, 60.0)
    first = Collected("", 80, seed=7, then=(10, lambda: batcher.submit(late.job)))
    leaving = Collected("The", 80, seed=9, stop_after=5)
    for c in (first, leaving):
        batcher.submit(c.job)
    for c in (first, leaving, late):
        assert c.finished.wait(60)
    assert 5 <= len(leaving.records) <= 6 and "done" not in leaving.records[-1]
    assert first.text() == alone(model, vocab, first)
    assert late.text() == alone(model, vocab, late)
    solo = Collected("Ber", 50, seed=8, watch=watch, temperature=0.8)
    run_batch(model, vocab, [solo])
    np.testing.assert_allclose([r["act"] for r in late.records[:-1]],
                               [r["act"] for r in solo.records[:-1]], atol=1e-4)
    assert [r["top"] for r in late.records[:-1]] == [r["top"] for r in solo.records[:-1]]


def test_a_failing_step_ends_every_row_with_an_error_and_the_batcher_recovers(loaded):
    model, vocab, _ = slowed(*loaded, delay=0.0)
    broken = {"on": True}
    step = model.stepper

    def stepper(precision="fp32"):
        inner = step(precision)

        def maybe_fail(tokens, state):
            if broken["on"] and tokens.shape[0] > 1:
                raise RuntimeError("out of memory")
            return inner(tokens, state)
        return maybe_fail
    model.stepper = stepper
    jobs = [Collected("", 20, seed=s) for s in range(3)]
    batcher, ended = run_batch(model, vocab, jobs)
    assert len(ended) == 3
    assert any("generation failed: RuntimeError: out of memory" in c.records[-1].get("error", "")
               for c in jobs)
    broken["on"] = False
    again = Collected("", 20, seed=0)
    batcher.submit(again.job)
    assert again.finished.wait(60) and again.records[-1]["done"]


# ------------------------------------------------------------------------ hidden units

def test_units_endpoint_returns_activations_and_a_ranking(client, loaded):
    model, vocab, _ = loaded
    text = "Ber. Who's there?\nFran. Nay, answer me.\n"
    r = client.post("/api/units", json={"text": text, "layer": 0, "state": "c", "unit": 5})
    assert r.status_code == 200
    reply = r.json()
    acts = collect(model, vocab, text)
    assert (reply["layer"], reply["state"], reply["unit"]) == (0, "c", 5)
    np.testing.assert_allclose(reply["activations"], acts.unit(0, "c", 5), atol=1e-4)
    np.testing.assert_allclose(reply["probs"], acts.probs, atol=1e-4)
    ranked = client.post("/api/units", json={"text": text, "rank": "line_position"}).json()
    rs = [abs(u["r"]) for u in ranked["ranking"]]
    assert len(rs) == 10 and rs == sorted(rs, reverse=True)
    best = ranked["ranking"][0]
    assert (ranked["layer"], ranked["state"], ranked["unit"]) == (
        best["layer"], best["state"], best["unit"])
    quoteless = client.post("/api/units", json={"text": text, "rank": "inside_quotes"}).json()
    assert quoteless["ranking"] == [] and "does not vary" in quoteless["note"]


@pytest.mark.parametrize("body, message", [
    ({"text": "Ber\u00e9"}, "outside the model's vocabulary: '\u00e9'"),
    ({"text": "Ber", "rank": "vowels"}, "rank must be one of inside_quotes"),
    ({"text": "Ber", "unit": 64}, "unit must be in [0, 63], got 64"),
    ({"text": "x" * 6001}, "text must be at most 6000 characters"),
    ({"text": ""}, "text is empty"),
])
def test_bad_units_requests_get_one_clear_json_error(client, body, message):
    r = client.post("/api/units", json=body)
    assert r.status_code == 422 and message in r.json()["error"], r.json()


def test_watched_unit_during_generation_matches_reading_the_text_afterwards(client):
    watch = {"layer": 0, "state": "c", "unit": 3}
    records = generate(client, prompt="Ber", length=40, seed=3, watch=watch)[:-1]
    text = "Ber" + "".join(r["text"] for r in records)
    reply = client.post("/api/units", json={"text": text, **watch}).json()
    np.testing.assert_allclose([r["act"] for r in records], reply["activations"][3:], atol=2e-3)


def step_by_step(model, vocab, text):
    """Reference: feed the characters one at a time and read every layer's state."""
    lines = EOS in vocab.specials
    start = vocab.id_of(BOS) if lines else vocab.id_of("\n")
    logits, state = model(torch.tensor([[start]]))
    if not lines:  # a prompt is read from a zero state; only its first guess follows a newline
        state = None
    values, probs = [], []
    for c in text:
        token = vocab.id_of(EOS) if lines and c == "\n" else vocab.id_of(c)
        probs.append(float(logits[0, -1].softmax(-1)[token]))
        if lines and c == "\n":
            logits, state = model(torch.tensor([[vocab.id_of(BOS)]]))
        else:
            logits, state = model(torch.tensor([[token]]), state)
        values.append(layer_values(state))
    return np.stack(values), np.array(probs)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "mingru", "lru"])
@pytest.mark.parametrize("lines", [False, True])
def test_collect_matches_stepping_the_model(cell, lines):
    chars = list('ab "()xyz') + ([] if lines else ["\n"])
    vocab = CharVocab(chars, (BOS, EOS) if lines else ())
    torch.manual_seed(0)
    model = CharLM(CharLMConfig(vocab_size=len(vocab), cell=cell, hidden_size=16,
                                num_layers=2, embed_size=8)).eval()
    text = 'ab "xy" (z a) b\nzz\n\nab'
    acts = collect(model, vocab, text)
    with torch.no_grad():
        values, probs = step_by_step(model, vocab, text)
    assert acts.values.shape == (len(text), 2, 2 if cell in ("lstm", "lru") else 1, 16)
    np.testing.assert_allclose(acts.values, values, atol=1e-5)
    np.testing.assert_allclose(acts.probs, probs, atol=1e-6)


def test_features_of_a_text():
    text = 'a "b(c\n)" d'
    assert units.inside_quotes(text).tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert units.line_position(text).tolist() == [1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4]
    assert units.inside_brackets(text).tolist() == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0]
    assert units.inside_brackets("((a)b)c)").tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    assert units.in_word(text).tolist() == [1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1]


def hand_built_lstm(vocab: CharVocab) -> CharLM:
    """One LSTM layer of 4 units whose weights are set by hand: unit 0 counts characters
    since the last newline (its cell grows by 0.05 a step; the forget gate shuts at '\\n'),
    unit 1 is on between '(' and ')'; units 2 and 3 are random."""
    torch.manual_seed(0)
    v, hidden = len(vocab), 4
    model = CharLM(CharLMConfig(vocab_size=v, embed_size=v, hidden_size=hidden, num_layers=1))
    cell = model.rnn.cells[0]
    i, f, g, o = (slice(k * hidden, k * hidden + 2) for k in range(4))
    nl, opening, closing = (vocab.id_of(c) for c in "\n()")
    with torch.no_grad():
        model.embed.weight.copy_(torch.eye(v))  # one-hot inputs
        for w in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh):
            w[i].zero_(), w[f].zero_(), w[g].zero_(), w[o].zero_()
        cell.bias_ih[i] = torch.tensor([10.0, -10.0])  # unit 0 always writes, unit 1 only at (
        cell.weight_ih[1, opening] = 20.0
        cell.bias_ih[f] = 10.0  # both remember ...
        cell.weight_ih[hidden * 1 + 0, nl] = -30.0  # ... unit 0 forgets at a newline
        cell.weight_ih[hidden * 1 + 1, closing] = -30.0  # ... unit 1 at )
        cell.bias_ih[g] = torch.tensor([0.05, 10.0])  # what they write: 0.05 and 1
        cell.bias_ih[o] = 10.0
    return model.eval()


def test_ranking_finds_the_units_built_to_track_a_feature():
    vocab = CharVocab(list("ab\n()"))
    model = hand_built_lstm(vocab)
    text = "ab(ab)a\nb(a)\naaab\n(ab)ba(b)\nab\n" * 3
    acts = collect(model, vocab, text)
    line, brackets = rank_units(acts, "line_position", 3), rank_units(acts, "inside_brackets", 3)
    assert line[0]["unit"] == 0 and line[0]["r"] > 0.95
    assert brackets[0]["unit"] == 1 and brackets[0]["r"] > 0.95
    assert all(u["unit"] in (0, 1) for u in line[:2] + brackets[:2])  # h and c of the unit


def test_ranking_on_known_activations():
    rng = np.random.default_rng(0)
    text = 'say "hi" and "bye" then "ok" ' * 4
    feature = units.inside_quotes(text)
    values = rng.normal(0, 0.3, (len(text), 2, 1, 8)).astype(np.float32)
    values[:, 1, 0, 5] = -feature + rng.normal(0, 0.1, len(text))  # anti-correlated: still found
    values[:, 0, 0, 2] = 0.5 * feature + rng.normal(0, 0.4, len(text))
    values[:, 0, 0, 7] = 0.25  # constant: no correlation, not nan
    acts = Activations(text, values, ("h",), np.ones(len(text)), np.zeros((len(text), 1)),
                       np.ones((len(text), 1)))
    ranked = rank_units(acts, "inside_quotes", 16)
    assert [(u["layer"], u["unit"]) for u in ranked[:2]] == [(1, 5), (0, 2)]
    assert ranked[0]["r"] < -0.9 and 0.3 < ranked[1]["r"] < 0.9
    assert {"layer": 0, "state": "h", "unit": 7, "r": 0.0} in ranked
    assert rank_units(acts, "inside_brackets") == []  # no brackets: nothing to rank


# ------------------------------------------------------------------------ the command line

def test_visualize_writes_a_page_and_a_png(run_dir, tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("\ufeffBer. Who's there?\r\nFran. Nay, answer me: stand [and] unfold.\r\n")
    out = tmp_path / "page.html"
    assert main(["visualize", str(run_dir), "--text", str(text), "--out", str(out),
                 "--units", "2"]) == 0
    page = out.read_text()
    body = "Ber. Who's there?\nFran. Nay, answer me: stand [and] unfold.\n"
    probability = page.split('id="probability">')[1].split("</div>")[0]
    assert probability.count("<span") == len(body) and 'title="p=' in probability
    assert page.count('<div class="text unit">') == 2 * 3  # quotes do not vary here
    assert "inside_quotes does not vary" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    png = (tmp_path / "page.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    assert "wrote" in capsys.readouterr().out


def test_visualize_does_not_overwrite_without_force(run_dir, tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("Ber. Who's there?\n")
    out = tmp_path / "page.html"
    out.write_text("keep me")
    err = error_of(capsys, ["visualize", str(run_dir), "--text", str(text), "--out", str(out)])
    assert "exist(s); pass --force" in err and out.read_text() == "keep me"
    assert not (tmp_path / "page.png").exists()
    assert main(["visualize", str(run_dir), "--text", str(text), "--out", str(out),
                 "--force", "--no-png"]) == 0
    assert out.read_text().startswith("<!doctype html>") and not (tmp_path / "page.png").exists()


def test_visualize_writes_its_files_together_or_not_at_all(run_dir, tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("Ber. Who's there?\n")
    args = ["visualize", str(run_dir), "--text", str(text), "--force"]
    (tmp_path / "page.html").mkdir()  # the page cannot be written: no picture either
    assert "page.html' is a folder" in error_of(capsys, [*args, "--out",
                                                        str(tmp_path / "page.html")])
    assert not (tmp_path / "page.png").exists()
    # the picture never lands on the page or on the text it reads, nor under another name
    out = str(tmp_path / "p.html")
    for png in (out, str(text)):
        assert "must end in .png" in error_of(capsys, [*args, "--out", out, "--png", png])
    err = error_of(capsys, [*args, "--out", str(tmp_path / "t.html"), "--png",
                            str(tmp_path / "text.png"), "--text", str(tmp_path / "t.html")])
    assert "is also an output" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html", "text.txt"]
    assert text.read_text() == "Ber. Who's there?\n"


def test_visualize_reads_other_encodings_and_names_a_folder(run_dir, tmp_path, capsys):
    text = tmp_path / "latin.txt"
    text.write_bytes("Ber. Who's there?\n".encode("latin-1"))
    assert main(["visualize", str(run_dir), "--text", str(text), "--encoding", "latin-1",
                 "--out", str(tmp_path / "p.html"), "--no-png"]) == 0
    err = error_of(capsys, ["visualize", str(run_dir), "--text", str(tmp_path), "--out",
                            str(tmp_path / "q.html")])
    assert "is a directory; give --text a file in it" in err
    assert "not a text encoding" in error_of(capsys, [
        "visualize", str(run_dir), "--text", str(text), "--encoding", "rot13", "--out",
        str(tmp_path / "q.html")])


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    (b"", "is empty"),
    (b"caf\xe9\n", "is not valid UTF-8"),
    ("Ber \u4e2d\u6587\n".encode(), "outside the model's vocabulary: '\u4e2d\u6587'"),
])
def test_visualize_bad_text_is_one_error_line_and_writes_nothing(run_dir, tmp_path, capsys,
                                                                 content, message):
    text = tmp_path / "text.txt"
    if content is not None:
        text.write_bytes(content)
    err = error_of(capsys, ["visualize", str(run_dir), "--text", str(text), "--out",
                            str(tmp_path / "page.html")])
    assert message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == (["text.txt"] if content is not None
                                                          else [])


@pytest.fixture(scope="module")
def pairs_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    (root / "pairs.tsv").write_text("".join(f"{i}\t{i * 2}\n" for i in range(100)))
    assert main(["train", "--task", "seq2seq", "--data", str(root / "pairs.tsv"), "--out",
                 str(root / "run"), "--preset", "tiny", "--max-steps", "2"]) == 0
    return root / "run"


def test_serve_bad_input_is_one_error_line(run_dir, pairs_run, tmp_path, capsys, monkeypatch):
    assert "not found" in error_of(capsys, ["serve", str(tmp_path / "nothing"), "--port", "0"])
    err = error_of(capsys, ["serve", str(pairs_run), "--port", "0"])
    assert "not a language model" in err
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    with taken:
        err = error_of(capsys, ["serve", str(run_dir), "--port", str(taken.getsockname()[1])])
    assert "cannot listen on 127.0.0.1:" in err and "pick another --port" in err
    assert "--max-concurrent must be a finite number > 0" in error_of(
        capsys, ["serve", str(run_dir), "--max-concurrent", "0", "--port", "0"])
    for timeout in ("0", "nan", "inf"):  # inf would reach /api/info, which JSON cannot hold
        assert f"--timeout must be a finite number > 0, got {float(timeout)}" in error_of(
            capsys, ["serve", str(run_dir), "--timeout", timeout, "--port", "0"])
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the extra were not installed
    assert 'pip install -e ".[serve]"' in error_of(capsys, ["serve", str(run_dir), "--port", "0"])


def test_serve_checks_its_flags_before_loading_the_model(tmp_path, capsys):
    nothing = str(tmp_path / "nothing")
    assert "--allow-host 'a b' is not a host name" in error_of(
        capsys, ["serve", nothing, "--allow-host", "a b"])
    assert "--threads must be >= 1, got 0" in error_of(capsys, ["serve", nothing, "--threads",
                                                                "0"])
    assert "--threads must be between 0" in error_of(capsys, ["serve", nothing, "--threads",
                                                              "1000000"])


def raw_get(port: int, host: str | None) -> tuple[int, str]:
    """GET /api/info over a plain socket with this Host header (None: none, as HTTP/1.0
    allows); returns the status and the body."""
    head = "" if host is None else f"Host: {host}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET /api/info HTTP/1.0\r\n{head}\r\n".encode())
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, _, body = reply.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


def test_serve_command_serves_on_loopback(run_dir):
    import httpx
    proc = subprocess.Popen([sys.executable, "-m", "rnnkit", "serve", str(run_dir), "--port",
                             "0", "--allow-host", "mybox.lan"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "on http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() else "")
        url = line.split(" on ")[1].split()[0].rstrip("/")
        assert httpx.get(f"{url}/api/health", timeout=10).json() == {"status": "ok"}
        r = httpx.post(f"{url}/api/generate", json={"prompt": "Ber", "length": 20, "seed": 1},
                       timeout=30)
        assert r.status_code == 200 and json.loads(r.text.splitlines()[-1])["chars"] == 20
        # a browser that a rebound name led here sends that name: refused, and the flag named
        port = int(url.rsplit(":", 1)[1])
        status, body = raw_get(port, "evil.example")
        assert status == 403 and "--allow-host" in json.loads(body)["error"]
        assert raw_get(port, None)[0] == 403
        for host in ("mybox.lan:80", f"localhost:{port}", f"127.0.0.1:{port}"):
            assert raw_get(port, host)[0] == 200, host
    finally:
        proc.terminate()
        proc.wait(10)
