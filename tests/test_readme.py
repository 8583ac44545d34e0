"""The README's promises: the CI runs its test command verbatim; its Python API runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(python3 -m venv .*?)\n```", (ROOT / "README.md").read_text())


def test_ci_runs_the_readme_test_command_verbatim():
    main_job, test_command = readme_commands()
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines
    assert "pytest" in test_command and "rnnkit train" in main_job


def test_main_job_uses_a_shipped_preset():
    from rnnkit.training.config import preset_names
    main_job, _ = readme_commands()
    preset = re.search(r"--preset (\S+)", main_job).group(1)
    assert preset in preset_names()


def test_python_api_example_runs(tmp_path, hamlet, monkeypatch):
    code = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    assert len(code.strip().splitlines()) <= 10
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_text.txt").write_text(hamlet.read_text())
    scope: dict = {}
    exec(code.replace('"max_steps": 500', '"max_steps": 60'), scope)
    assert scope["logits"].shape[:2] == (1, 4) and (tmp_path / "runs/mine/best.pt").is_file()
