"""Checkpoints never unpickle code; exported safetensors load without pickle at all."""

import pickle

import pytest
import torch

import rnnkit
from rnnkit.cli import main
from rnnkit.errors import RnnkitError
from rnnkit.training.checkpoint import load_checkpoint


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
