from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

SENTENCES = ["I think therefore I am", "I like machine learning",
             "I am not just a neural network"]


@pytest.fixture
def hamlet() -> Path:
    """40 kB of Hamlet (public domain), so no test needs the built-in corpus package."""
    return FIXTURES / "hamlet_excerpt.txt"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny character model of the Hamlet excerpt (20 steps), trained once per module."""
    from rnnkit.cli import main
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--data", str(FIXTURES / "hamlet_excerpt.txt"), "--out", str(out),
                 "--preset", "tiny", "--max-steps", "20", "--eval-every", "10",
                 "--seq-length", "16"]) == 0
    return out


@pytest.fixture
def sentences_file(tmp_path) -> Path:
    p = tmp_path / "sentences.txt"
    p.write_text("\n".join(SENTENCES) + "\n")
    return p


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """The test models are tiny: one thread is faster than two and immune to a busy machine."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Prepared corpora go to a cache of the test session's own, never the user's
    ~/.cache/rnnkit; processes the tests start inherit it."""
    import os
    before = os.environ.get("RNNKIT_CACHE")
    os.environ["RNNKIT_CACHE"] = str(tmp_path_factory.mktemp("rnnkit-cache"))
    yield
    if before is None:
        os.environ.pop("RNNKIT_CACHE", None)
    else:
        os.environ["RNNKIT_CACHE"] = before
