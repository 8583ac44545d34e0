"""minGRU, minLSTM and the LRU (layers/parallel_cells.py) and the scans under them
(layers/scan.py): each scan against the step-by-step loop, each cell's whole-sequence path
against its own steps, padding, carried state, decoding steps, stacks, learning, and every
task through the command line."""

import json
import math
import random

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.testing import assert_close

import rnnkit
from rnnkit.cli import main
from rnnkit.layers import CELLS, BiRecurrent, LRUCell, Recurrent
from rnnkit.layers.parallel_cells import g
from rnnkit.layers.recurrent_step import RecurrentStep, int8_available
from rnnkit.layers.scan import CHUNK, linear_scan, sequential_scan

NAMES = ["mingru", "minlstm", "lru"]
# around the chunk edges, and long enough to span many chunks
LENGTHS = [1, 2, 7, CHUNK - 1, CHUNK, CHUNK + 1, 255, 256, 257, 1000, 4096]
B, D, H = 3, 5, 8


def gates(shape, generator=None):
    """(a, b) as a freshly made minGRU computes them from unit-scale gate inputs."""
    k_z, k_h = torch.randn(2, *shape, generator=generator)
    return torch.sigmoid(-k_z), torch.sigmoid(k_z) * g(k_h)


def lru_coefficients(shape, generator=None):
    """(lambda (H,), b (B, T, H)) as the LRU's initialisation makes them: complex, b scaled
    by gamma = sqrt(1 - |lambda|^2)."""
    torch.manual_seed(0)
    cell = LRUCell(shape[-1], shape[-1])
    with torch.no_grad():
        lam = cell._lambda()
        b = torch.complex(*torch.randn(2, *shape, generator=generator))
        return lam, b * (1 - lam.abs() ** 2).sqrt()


def random_mask(batch, steps, generator):
    """Holes anywhere, not only at the end: the scans take any mask."""
    return torch.rand(batch, steps, generator=generator) < 0.7


# ---------------------------------------------------------------- the scans


@pytest.mark.parametrize("steps", LENGTHS)
@pytest.mark.parametrize("carried", [False, True], ids=["zero-h0", "given-h0"])
def test_linear_scan_equals_the_step_by_step_loop(steps, carried):
    gen = torch.Generator().manual_seed(steps)
    a, b = gates((2, steps, H), gen)
    h0 = torch.randn(2, H, generator=gen) if carried else None  # any sign
    want = sequential_scan(a.double(), b.double(), None if h0 is None else h0.double())
    got = linear_scan(a, b, h0)
    assert got.dtype == torch.float32
    assert_close(got, want.float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("steps", LENGTHS)
def test_linear_scan_equals_the_step_by_step_loop_in_complex(steps):
    gen = torch.Generator().manual_seed(steps)
    lam, b = lru_coefficients((2, steps, H), gen)
    h0 = torch.complex(*torch.randn(2, 2, H, generator=gen))
    want = sequential_scan(lam.to(torch.complex128), b.to(torch.complex128),
                           h0.to(torch.complex128))
    got = linear_scan(lam, b, h0)
    assert got.dtype == torch.complex64
    assert_close(got, want.to(torch.complex64), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("steps", [1, 7, CHUNK + 1, 300])
def test_masked_steps_pass_the_state_through(steps):
    gen = torch.Generator().manual_seed(1)
    mask = random_mask(4, steps, gen)
    a, b = gates((4, steps, H), gen)
    h0 = torch.randn(4, H, generator=gen)
    want = sequential_scan(a.double(), b.double(), h0.double(), mask)
    got = linear_scan(a, b, h0, mask)
    assert_close(got, want.float(), atol=1e-5, rtol=1e-5)
    lam, b = lru_coefficients((4, steps, H), gen)
    want = sequential_scan(lam.to(torch.complex128), b.to(torch.complex128), None, mask)
    assert_close(linear_scan(lam, b, None, mask), want.to(torch.complex64), atol=1e-5,
                 rtol=1e-5)
    # at a masked step the state is the one before it
    h = torch.cat([h0[:, None], got], dim=1)
    held = ~mask
    assert_close(h[:, 1:][held], h[:, :-1][held])


def scan_gradients(scan, inputs, mask, weights):
    """The gradients for the inputs that are given (h0 may be None: a zero start)."""
    inputs = [None if x is None else x.detach().clone().requires_grad_() for x in inputs]
    out = scan(*inputs, mask)
    given = [x for x in inputs if x is not None]
    grads = torch.autograd.grad((out * weights).real.sum(), given)
    return [g_.to(inputs[0].dtype) for g_ in grads]


def gradients_against_the_loop(inputs, mask, weights, tol):
    """linear_scan's gradients for (a, b, h0), checked finite and against the loop's in
    double precision; returns them."""
    wide = torch.complex128 if inputs[1].is_complex() else torch.float64
    got = scan_gradients(linear_scan, inputs, mask, weights)
    want = scan_gradients(sequential_scan, [None if x is None else x.to(wide) for x in inputs],
                          mask, weights.double())
    for x, y in zip(got, want, strict=True):
        assert torch.isfinite(x).all()
        assert_close(x, y.to(x.dtype), atol=tol, rtol=tol)
    return got


@pytest.mark.parametrize("steps", [7, CHUNK + 1, 300])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("carried", [False, True], ids=["zero-h0", "given-h0"])
def test_scan_gradients_equal_the_loops(steps, masked, carried):
    gen = torch.Generator().manual_seed(2)
    mask = random_mask(2, steps, gen) if masked else None
    a, b = gates((2, steps, H), gen)
    h0 = torch.randn(2, H, generator=gen) if carried else None
    weights = torch.randn(2, steps, H, generator=gen)  # a loss that reads every step
    got = gradients_against_the_loop((a, b, h0), mask, weights, 1e-4)
    if masked:  # the padding sends no gradient back
        assert (got[1][~mask] == 0).all()

    lam, b = lru_coefficients((2, steps, H), gen)
    lam = lam.expand_as(b)
    h0 = torch.complex(*torch.randn(2, 2, H, generator=gen)) if carried else None
    gradients_against_the_loop((lam, b, h0), mask, weights, 1e-4)


def test_saturated_gates_and_a_zero_state_keep_exact_values_and_gradients():
    """Gates at exactly 0 and 1 (a forgotten or a kept state), b = 0 and h0 = 0, across
    chunk ends: values and gradients as the loop's, all finite."""
    steps = 2 * CHUNK + 3
    a, b = gates((2, steps, H))
    a[:, ::3], a[:, 1::3] = 0.0, 1.0
    b[:, :CHUNK + 10] = 0.0
    h0 = torch.zeros(2, H)
    weights = torch.randn(2, steps, H)
    h = linear_scan(a, b, h0)
    assert (h[:, :CHUNK + 10] == 0).all()
    gradients_against_the_loop((a, b, h0), None, weights, 1e-5)


def test_the_scans_run_in_fp32_under_bf16_autocast():
    a, b = gates((2, 300, H))
    lam, c = lru_coefficients((2, 300, H))
    exact = linear_scan(a, b), linear_scan(lam, c)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # float32 inputs: autocast is off inside, the result is exactly fp32's
        assert torch.equal(linear_scan(a, b), exact[0])
        assert torch.equal(linear_scan(lam, c), exact[1])
        # bf16 inputs: scanned in fp32, given back in bf16 (3 significant digits)
        low = a.bfloat16(), b.bfloat16()
        got = linear_scan(*low)
    assert got.dtype == torch.bfloat16
    want = linear_scan(*(x.float() for x in low))
    assert_close(got.float(), want, atol=1e-3, rtol=2e-2)


def test_g_stays_positive():
    x = torch.linspace(-30, 30, 1001)
    assert (g(x) > 0).all()
    assert_close(g(torch.tensor([0.0])), torch.tensor([0.5]))  # continuous at 0


# ---------------------------------------------------------------- the cells


def random_state(count, *lead, generator=None):
    return tuple(torch.randn(*lead, H, generator=generator) for _ in range(count))


def step_through(cell, x, state):
    outs = []
    for t in range(x.shape[1]):
        y, state = cell(x[:, t], state)
        outs.append(y)
    return torch.stack(outs, dim=1), state


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("steps", [1, 20, CHUNK + 6])
@pytest.mark.parametrize("input_size", [D, H], ids=["projected", "same-width"])
def test_the_sequence_path_equals_stepping_the_cell(name, steps, input_size):
    torch.manual_seed(3)
    cell = CELLS[name](input_size, H)
    assert cell.forget_gate is None and len(cell.state_names) == cell.state_count
    x = torch.randn(B, steps, input_size)
    state = random_state(cell.state_count, B)
    want, want_state = step_through(cell, x, state)
    got, got_state = cell.sequence(x, state)
    assert got.shape == (B, steps, H)
    assert_close(got, want, atol=1e-5, rtol=1e-5)
    for s, w in zip(got_state, want_state, strict=True):
        assert_close(s, w, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_through_the_scan_equal_the_stepped_cell(name):
    torch.manual_seed(4)
    cell = CELLS[name](D, H).double()
    x = torch.randn(B, 12, D, dtype=torch.float64, requires_grad=True)
    state = tuple(s.double().requires_grad_() for s in random_state(cell.state_count, B))
    inputs = [x, *state, *cell.parameters()]

    def grads(run):
        y, final = run(cell, x, state)
        loss = (y ** 2).sum() + sum((s ** 3).sum() for s in final)
        return torch.autograd.grad(loss, inputs)

    for got, want in zip(grads(lambda c, x, s: c.sequence(x, s)), grads(step_through),
                         strict=True):
        assert_close(got, want, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_padding_is_never_read_and_each_row_ends_at_its_length(name):
    torch.manual_seed(5)
    rnn = Recurrent(name, D, H, 2).eval()
    assert not rnn.fused
    steps, lengths = CHUNK + 9, torch.tensor([CHUNK + 9, 1, 40])
    x = torch.randn(B, steps, D)
    x[1, 1:] = float("nan")  # padding, never read
    state = random_state(rnn.state_count, 2, B)
    out, final = rnn(x, state, lengths)
    assert torch.isfinite(out).all()
    for b, n in enumerate(lengths.tolist()):
        alone, alone_state = rnn(x[b:b + 1, :n], tuple(s[:, b:b + 1] for s in state))
        assert_close(out[b:b + 1, :n], alone, atol=1e-5, rtol=1e-5)
        assert (out[b, n:] == 0).all()
        for s, w in zip(final, alone_state, strict=True):
            assert_close(s[:, b:b + 1], w, atol=1e-5, rtol=1e-5)
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in rnn.parameters())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("split", [1, CHUNK + 3])
def test_a_carried_state_continues_the_sequence(name, split):
    """Truncated BPTT: two windows, the first's final state starting the second, compute
    what one window of the whole length does."""
    torch.manual_seed(6)
    rnn = Recurrent(name, D, H, 2).eval()
    x = torch.randn(B, CHUNK + 20, D)
    whole, whole_state = rnn(x)
    first, mid = rnn(x[:, :split])
    second, end = rnn(x[:, split:], mid)
    assert_close(torch.cat([first, second], dim=1), whole, atol=1e-5, rtol=1e-5)
    for s, w in zip(end, whole_state, strict=True):
        assert_close(s, w, atol=1e-5, rtol=1e-5)
    restarted, _ = rnn(x[:, split:])  # the carried state matters
    assert not torch.allclose(restarted[:, 0], whole[:, split], atol=1e-3)


def decode(rnn, embed, inputs, precision, state=None):
    step, outs = RecurrentStep(rnn, embed, precision), []
    for t in range(inputs.shape[1]):
        y, state = step(inputs[:, t], state)
        outs.append(y)
    return torch.stack(outs, dim=1), state


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("embedded", [False, True])
def test_the_decoding_step_equals_the_sequence_path(name, embedded):
    torch.manual_seed(7)
    rnn = Recurrent(name, 12, H, 3).eval()
    embed = nn.Embedding(9, 12) if embedded else None
    inputs = torch.randint(0, 9, (B, 15)) if embedded else torch.randn(B, 15, 12)
    state = random_state(rnn.state_count, 3, B)
    with torch.no_grad():
        want, want_state = rnn(embed(inputs) if embedded else inputs, state)
    got, got_state = decode(rnn, embed, inputs, "fp32", state)
    assert_close(got, want, atol=1e-5, rtol=1e-5)
    for s, w in zip(got_state, want_state, strict=True):
        assert_close(s, w, atol=1e-5, rtol=1e-5)


# a lower precision's error in the outputs, relative to their largest magnitude (the
# outputs are a residual stream, not squashed into [-1, 1]); measured: bf16 < 0.005,
# int8 < 0.02
LOW_PRECISION = {"bf16": 0.01, "int8": 0.04}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("embedded", [False, True])
def test_lower_precision_steps_stay_close(name, precision, embedded):
    if precision == "int8" and not int8_available():
        pytest.skip("no dynamic int8 kernel in this torch")
    torch.manual_seed(8)
    rnn = Recurrent(name, 12, H, 2).eval()
    embed = nn.Embedding(9, 12) if embedded else None
    inputs = torch.randint(0, 9, (4, 12)) if embedded else torch.randn(4, 12, 12)
    exact, _ = decode(rnn, embed, inputs, "fp32")
    low, _ = decode(rnn, embed, inputs, precision)
    err = ((low - exact).abs().max() / exact.abs().max()).item()
    assert 0 < err < LOW_PRECISION[precision], err  # a lower precision really is in use


def test_the_step_is_a_copy_of_the_weights():
    """Training may go on while a decoding step made from the cell is in use."""
    torch.manual_seed(9)
    rnn = Recurrent("mingru", D, H, 1).eval()
    x = torch.randn(B, 4, D)
    step = RecurrentStep(rnn)
    before, _ = step(x[:, 0])
    with torch.no_grad():
        for p in rnn.parameters():
            p.add_(1.0)
    assert torch.equal(step(x[:, 0])[0], before)


@pytest.mark.parametrize(("name", "impl"),
                         [(n, "auto") for n in NAMES] + [("lstm", "fused"), ("lstm", "cells")])
def test_an_input_without_steps_is_refused_by_name(name, impl):
    rnn = Recurrent(name, D, H, 2, impl=impl)
    for shape in [(B, 0, D), (B, D)]:
        with pytest.raises(ValueError, match="at least one step"):
            rnn(torch.randn(shape))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("layers", [2, 4])
def test_deep_stacks_train_and_stay_finite(name, layers):
    torch.manual_seed(10)
    rnn = Recurrent(name, D, H, layers, dropout=0.1)
    x = torch.randn(B, 30, D)
    out, state = rnn(x)
    assert out.shape == (B, 30, H) and all(s.shape == (layers, B, H) for s in state)
    assert len(state) == CELLS[name].state_count
    out.pow(2).mean().backward()
    for p in rnn.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_stays_close_to_fp32(name):
    torch.manual_seed(11)
    rnn = Recurrent(name, D, H, 2).eval()
    x = torch.randn(B, 40, D)
    want, _ = rnn(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, state = rnn(x)
    assert all(s.dtype == torch.float32 for s in state)  # the scan's own precision
    assert (got.float() - want).abs().max() < 0.05 * want.abs().max()


@pytest.mark.parametrize("name", NAMES)
def test_a_bidirectional_stack_reads_each_row_within_its_length(name):
    torch.manual_seed(12)
    bi = BiRecurrent(name, D, H, 2).eval()
    lengths = torch.tensor([9, 4, 1])
    x = torch.randn(B, 9, D)
    out, state = bi(x, None, lengths)
    assert out.shape == (B, 9, 2 * H)
    assert all(s.shape == (4, B, H) for s in state)
    for b, n in enumerate(lengths.tolist()):
        alone, alone_state = bi(x[b:b + 1, :n])
        assert_close(out[b:b + 1, :n], alone, atol=1e-5, rtol=1e-5)
        assert (out[b, n:] == 0).all()
        for s, w in zip(state, alone_state, strict=True):
            assert_close(s[:, b:b + 1], w, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- learning


@pytest.mark.parametrize("name", NAMES)
def test_the_recurrence_remembers_a_token(name):
    """Recall a marked token (ids V..2V-1) at the last of 8 steps, past distractors (ids
    0..V-1): only the state can carry it there (the blocks' other layers read one step
    each), so this fails when the scan's gradient breaks. Marked: the gates read the input
    alone, so they can only tell what to keep by what it is."""
    torch.manual_seed(13)
    V, T = 4, 8
    embed, rnn, head = nn.Embedding(2 * V, 16), Recurrent(name, 16, 16, 1), nn.Linear(16, V)
    params = [*embed.parameters(), *rnn.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-2)
    for _ in range(150):
        first = torch.randint(0, V, (32,))
        tokens = torch.randint(0, V, (32, T))  # distractors
        tokens[:, 0] = V + first
        out, _ = rnn(embed(tokens))
        loss = F.cross_entropy(head(out[:, -1]), first)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2, loss.item()  # chance is log 4 = 1.39


CLI = ["--rnn-size", "16", "--num-layers", "2", "--embed-size", "8", "--batch-size", "4",
       "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module", params=NAMES)
def lm_run(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"{request.param}_lm")
    text = root / "abc.txt"
    text.write_text("abcdefghij" * 400)  # each letter says which comes next
    out = root / "run"
    assert main(["train", "--cell", request.param, "--data", str(text), "--out", str(out),
                 "--seq-length", "16", "--max-steps", "20", "--eval-every", "10",
                 "--learning-rate", "0.02", "--warmup-steps", "5", *CLI]) == 0
    return request.param, out


def test_the_language_model_learns_and_samples_the_cycle(lm_run, capsys):
    name, run = lm_run
    model, _, _ = rnnkit.load(run)
    assert type(model.rnn.cells[0]) is CELLS[name]
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["val_loss"] for r in rows if "val_loss" in r]
    # uniform over the 10 letters is log 10 = 2.3 nats
    assert losses[-1] < math.log(10) - 1.0, losses
    capsys.readouterr()
    assert main(["sample", str(run), "--prime-text", "abc", "--argmax", "--length", "20"]) == 0
    assert capsys.readouterr().out.startswith("abcdefghijabcdefghij")
    assert main(["sample", str(run), "--prime-text", "abc", "--length", "12",
                 "--beam", "4"]) == 0
    assert capsys.readouterr().out.startswith("abcdefghij")


def pair_data(task, path):
    rng = random.Random(0)
    lines = []
    for _ in range(80):
        s = "".join(rng.choice("abcde") for _ in range(rng.randint(2, 6)))
        target = {"seq2seq": lambda: s[::-1],
                  "classify": lambda: "yes" if s.count("a") >= 2 else "no",
                  "tag": lambda: " ".join("V" if c in "ae" else "O" for c in s)}[task]()
        lines.append(f"{s}\t{target}\n")
    path.write_text("".join(lines))
    return ["--data", str(path), "--embed-size", "8"]


TASK_FLAGS = {"activity": ["--frames", "4", "--frame-size", "16", "--eval-examples", "8"],
              "caption": ["--max-digits", "1", "--embed-size", "8", "--eval-examples", "8"]}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("task", ["seq2seq", "classify", "tag", "activity", "caption"])
def test_every_task_takes_the_cell(task, name, tmp_path):
    if task in TASK_FLAGS:
        pytest.importorskip("sklearn")
        pytest.importorskip("PIL")
        flags = TASK_FLAGS[task]
    else:
        flags = pair_data(task, tmp_path / "pairs.tsv")
    out = tmp_path / "run"
    assert main(["train", "--task", task, "--cell", name, "--out", str(out), "--max-steps",
                 "3", "--eval-every", "3", "--rnn-size", "8", "--num-layers", "2",
                 "--batch-size", "4", "--threads", "1", *flags]) == 0
    model, _, _ = rnnkit.load(out)
    assert model.config.cell == name
