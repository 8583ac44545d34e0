from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

SENTENCES = ["I think therefore I am", "I like machine learning",
             "I am not just a neural network"]


@pytest.fixture
def hamlet() -> Path:
    """40 kB of Hamlet (public domain), so no test needs the built-in corpus package."""
    return FIXTURES / "hamlet_excerpt.txt"


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
