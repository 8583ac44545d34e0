"""Checkpoints never unpickle code; exported safetensors load without pickle at all; a hostile
checkpoint fails in one error line, in little memory and time."""

import json
import pickle
import re
import struct
import subprocess
import sys
import zipfile

import pytest
import safetensors.torch
import torch

import rnnkit
from rnnkit.cli import main
from rnnkit.errors import RnnkitError
from rnnkit.models.char_lm import CharLM
from rnnkit.tasks.lm import LanguageModelTask
from rnnkit.training.checkpoint import ShapesOnly, export_safetensors, load_checkpoint


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # what a malicious checkpoint does: run code when unpickled
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from pathlib import Path
    hamlet = Path(__file__).parent / "fixtures" / "hamlet_excerpt.txt"
    out = tmp_path_factory.mktemp("safe") / "run"
    rnnkit.train(*rnnkit.configs(preset="tiny", train={"data": str(hamlet), "max_steps": 20}),
                 out=out)
    return out


def test_a_crafted_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "meta": {"kind": "rnnkit.char_lm"},
                "model": Exploit(marker)}, evil, pickle_protocol=2)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(Exploit(marker), protocol=2))
    for path in (evil, raw):
        with pytest.raises(RnnkitError, match="corrupt or not an rnnkit checkpoint"):
            load_checkpoint(path)
    assert not marker.exists()


def test_export_round_trip_gives_the_same_model(trained, tmp_path, capsys):
    out = tmp_path / "model.safetensors"
    assert main(["export", str(trained), "--out", str(out)]) == 0
    assert out.is_file() and out.with_suffix(".json").is_file()
    a, vocab, meta_a = rnnkit.load(trained)
    b, _, meta_b = rnnkit.load(out)
    x = torch.tensor(vocab.encode("Ham"))[None]
    torch.testing.assert_close(a(x)[0], b(x)[0], rtol=0, atol=0)
    assert meta_a["config"] == meta_b["config"] and meta_a["vocab"] == meta_b["vocab"]
    assert rnnkit.evaluate(out) == rnnkit.evaluate(trained)
    assert rnnkit.sample(out, "Ham", 30, seed=2) == rnnkit.sample(trained, "Ham", 30, seed=2)
    capsys.readouterr()
    assert main(["export", str(trained), "--out", str(out)]) == 2  # no silent overwrite
    assert "--force" in capsys.readouterr().err
    assert main(["export", str(trained), "--out", str(tmp_path / "m.bin")]) == 2
    sidecar_only = tmp_path / "other.safetensors"
    sidecar_only.with_suffix(".json").write_text("{}")
    assert main(["export", str(trained), "--out", str(sidecar_only)]) == 2
    assert sidecar_only.with_suffix(".json").read_text() == "{}" and not sidecar_only.exists()


def test_other_format_versions_and_kinds_are_refused(trained, tmp_path):
    payload = torch.load(trained / "best.pt", weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(RnnkitError, match="format version 99"):
        load_checkpoint(tmp_path / "future.pt")
    payload["format_version"], payload["meta"]["kind"] = 1, "rnnkit.transformer"
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(RnnkitError, match="not an rnnkit checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    payload["meta"]["kind"] = "rnnkit.seq2seq"  # a known kind without its vocabularies
    torch.save(payload, tmp_path / "mislabelled.pt")
    with pytest.raises(RnnkitError, match="incomplete"):
        load_checkpoint(tmp_path / "mislabelled.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((trained / "best.pt").read_bytes()[:5000])
    with pytest.raises(RnnkitError, match="corrupt"):
        load_checkpoint(truncated)


# Runs each command line given (a JSON list) with rnnkit's main in this one process, under an
# address-space limit of 2 GiB beyond what the imports took (so a regression fails its
# allocation instead of taking the machine's memory), and prints for each its exit status,
# stderr and seconds, then the process's peak resident memory.
CHILD = """
import contextlib, io, json, os, resource, sys, time, traceback
from rnnkit.cli import main
if os.path.exists("/proc/self/statm"):
    size = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    soft = size + 2**31 if hard == resource.RLIM_INFINITY else min(size + 2**31, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
runs = []
for argv in json.loads(sys.argv[1]):
    err, start = io.StringIO(), time.perf_counter()
    with contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except Exception:  # a traceback, which no checkpoint may cause
            traceback.print_exc()
            rc = 1
    runs.append({"rc": rc, "err": err.getvalue(), "seconds": time.perf_counter() - start})
# Linux: this process's own high-water mark. ru_maxrss would not do: exec keeps the peak of
# the memory it replaces, which after subprocess's vfork is the whole test process's
status = "/proc/self/status"
if os.path.exists(status):
    line = next(x for x in open(status) if x.startswith("VmHWM:"))
    peak = int(line.split()[1]) * 1024
else:  # macOS: ru_maxrss in bytes
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"runs": runs, "peak": peak}))
"""


def forge(trained, **model_config) -> dict:
    payload = torch.load(trained / "best.pt", weights_only=True)
    payload["meta"]["config"]["model"].update(model_config)
    return payload


def zip_bomb(checkpoint, out) -> None:
    """``checkpoint`` with its data/0 record replaced by 1 GiB of zeros deflated to ~5 MB. The
    zeros are streamed in, so building it holds 1 MiB."""
    zeros = bytes(2**20)
    with zipfile.ZipFile(checkpoint) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as dst:
        for info in src.infolist():
            if info.filename.endswith("/data/0"):
                with dst.open(info.filename, "w", force_zip64=True) as f:
                    for _ in range(1024):
                        f.write(zeros)
            else:
                dst.writestr(info, src.read(info))  # stored, as torch.save wrote it


def lying_sizes(checkpoint, out) -> None:
    """``checkpoint`` with its central directory claiming data/0 unpacks to 2 GiB."""
    data = bytearray(checkpoint.read_bytes())
    entry = data.rfind(b"PK\x01\x02", 0, data.rfind(b"/data/0"))
    struct.pack_into("<I", data, entry + 24, 2**31)  # the record's uncompressed size
    out.write_bytes(data)


def safetensors_with_meta(trained, out, metadata: dict | None) -> None:
    payload = torch.load(trained / "best.pt", weights_only=True)
    out.write_bytes(safetensors.torch.save(payload["model"], metadata=metadata))


# file name: what the one line ``rnnkit sample FILE`` prints must match
HOSTILE = {
    "huge_config.pt": r"config and weights do not fit together \(rnn\.cells\.0\.weight_ih: "
                      r"config wants \(48000, 16\), file holds \(256, 16\)\); use another",
    "huge_config.safetensors": r"do not fit together \(rnn\.cells\.0\.weight_ih: config wants "
                               r"\(48000, 16\), file holds \(256, 16\)\)",
    "hidden_1e9.pt": r"do not fit together \(config describes tensors too large for any "
                     r"machine \(their sizes overflow\)\)",
    "layers_1e6.pt": r"do not fit together \(config builds over \d+ modules and parameters, "
                     r"file holds 7 tensors\)",
    "hidden_0.pt": r"do not fit together \(hidden_size must be >= 1, got 0\)",
    # each damaged setting named, not a Python error's text
    "hidden_str.pt": r"do not fit together \(hidden_size must be int, got '16'\)",
    "unknown_setting.pt": r"do not fit together \('foo' is no setting of CharLMConfig\)",
    "config_a_string.pt": r"do not fit together \(its config holds no model and train "
                          r"settings\)",
    "expanded.pt": r"do not fit together \(config wants 6,9\d\d,\d{3},\d{3} bytes of weights, "
                   r"file stores 4 bytes\)",
    "zip_bomb.pt": r"'.*zip_bomb\.pt' is corrupt or not an rnnkit checkpoint \(compressed "
                   r"records: archive/data/0\); use another checkpoint or retrain",
    "lying_sizes.pt": r"is corrupt or not an rnnkit checkpoint \(its records unpack to "
                      r"2,147,\d{3},\d{3} bytes, the file holds \d",
    "nan_weights.pt": r"the checkpoint holds non-finite weights \(NaN or inf in "
                      r"rnn\.cells\.0\.weight_hh\); use another checkpoint",
    "no_meta.safetensors": r"is corrupt or not an rnnkit checkpoint \(its header holds no "
                           r"rnnkit meta \(a JSON object\)\)",
    "list_meta.safetensors": r"is corrupt or not an rnnkit checkpoint \(its header holds no "
                             r"rnnkit meta",
    "huge_header.safetensors": r"is corrupt or not an rnnkit checkpoint \(.*header too large",
}


@pytest.fixture(scope="module")
def hostile(trained, tmp_path_factory):
    """Every file of HOSTILE, built from the trained run, and what ``rnnkit sample`` said about
    each (in one child process, so its peak memory is measured)."""
    d = tmp_path_factory.mktemp("hostile")
    torch.save(forge(trained, hidden_size=12000, num_layers=2), d / "huge_config.pt")
    export_safetensors(forge(trained, hidden_size=12000, num_layers=2),
                       d / "huge_config.safetensors")
    torch.save(forge(trained, hidden_size=10**9), d / "hidden_1e9.pt")
    torch.save(forge(trained, num_layers=10**6), d / "layers_1e6.pt")
    torch.save(forge(trained, hidden_size=0), d / "hidden_0.pt")
    torch.save(forge(trained, hidden_size="16"), d / "hidden_str.pt")
    torch.save(forge(trained, foo=1), d / "unknown_setting.pt")
    stringly = forge(trained)
    stringly["meta"]["config"] = "lstm 2x16"
    torch.save(stringly, d / "config_a_string.pt")
    expanded = forge(trained, hidden_size=12000, num_layers=2)
    with torch.device("meta"), ShapesOnly():
        shapes = CharLM(LanguageModelTask.models["rnn"][1](**expanded["meta"]["config"]["model"]))
    one = torch.zeros(1)  # every tensor a zero-stride view of this one number
    expanded["model"] = {k: one.expand(t.shape) for k, t in shapes.state_dict().items()}
    torch.save(expanded, d / "expanded.pt")
    zip_bomb(trained / "best.pt", d / "zip_bomb.pt")
    lying_sizes(trained / "best.pt", d / "lying_sizes.pt")
    nan = forge(trained)
    nan["model"]["rnn.cells.0.weight_hh"][3, 1] = float("nan")
    torch.save(nan, d / "nan_weights.pt")
    safetensors_with_meta(trained, d / "no_meta.safetensors", None)
    safetensors_with_meta(trained, d / "list_meta.safetensors", {"rnnkit": "[1]"})
    (d / "huge_header.safetensors").write_bytes(struct.pack("<Q", 2**62) + b"{}")
    assert (d / "zip_bomb.pt").stat().st_size < 8 * 2**20
    commands = [["sample", str(d / name), "--length", "5"] for name in HOSTILE]
    child = subprocess.run([sys.executable, "-c", CHILD, json.dumps(commands)],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.splitlines()[-1])
    return dict(zip(HOSTILE, report["runs"])), report["peak"]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_checkpoint_fails_in_one_line_quickly(hostile, name):
    runs, _ = hostile
    run = runs[name]
    assert run["rc"] != 0
    lines = run["err"].splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnkit: error: "), run["err"]
    assert re.search(HOSTILE[name], lines[0]), lines[0]
    assert run["seconds"] < 3, run


def test_hostile_checkpoints_cost_little_memory(hostile):
    _, peak = hostile  # the claimed model needs 7 GB, the zip bomb unpacks to 1 GiB
    assert peak < 2**30, f"peak resident memory {peak / 2**20:.0f} MiB"


def test_a_model_that_cannot_be_built_on_meta_still_loads(trained, monkeypatch):
    class DataDependent(CharLM):  # its __init__ reads a value: impossible on the meta device
        def __init__(self, config):
            super().__init__(config)
            self.start = float(self.head.weight.detach().abs().sum())

    _, config_cls = LanguageModelTask.models["rnn"]
    monkeypatch.setitem(LanguageModelTask.models, "rnn", (DataDependent, config_cls))
    model, _, _ = rnnkit.load(trained)
    assert isinstance(model, DataDependent) and model.start > 0


def test_eval_json_is_strict_when_a_metric_is_not_finite(trained, tmp_path, capsys):
    payload = forge(trained)
    payload["model"]["head.weight"].fill_(3e38)  # finite weights, logits overflow: NaN loss
    torch.save(payload, tmp_path / "overflow.pt")
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "overflow.pt"), "--json"]) == 0

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    report = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert report["loss"] is None and report["perplexity"] is None and report["tokens"] > 0
