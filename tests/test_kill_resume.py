"""kill -9 at random moments, --resume each time: the run ends as if never killed."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "crash_test.py"


def crash_test():
    spec = importlib.util.spec_from_file_location("crash_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_three_kill_9s_then_resume_equal_an_uninterrupted_run(tmp_path, hamlet):
    result = crash_test().crash_and_compare(str(hamlet), kills=3, seed=1, workdir=str(tmp_path))
    assert result["kills"] == 3
    assert result["same_weights"] and result["same_losses"]
    assert result["steps_unique_and_complete"]
