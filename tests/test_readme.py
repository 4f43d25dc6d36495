"""The README's Python examples run as written, and the report it shows is what its example prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)
# the IntervalReport output shown in the README, without its last line (the plot's absolute path)
SHOWN_REPORT = re.search(r"The README example above prints:\n\n```text\n(.*?)\nplot: [^\n]*\n```", TEXT, flags=re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 1


def test_readme_lightning_example_logs_with_loggable_and_reports():
    block = next(b for b in BLOCKS if "class Classifier(LightningModule)" in b)
    assert ".loggable(" in block and "IntervalReport(" in block and "trainer.fit(" in block
    assert "to_log_dict" not in block  # the manual compute/log/reset route is no longer the example
    assert SHOWN_REPORT is not None


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), {"__name__": "__readme__"})
    if "IntervalReport(" in BLOCKS[index] and "trainer.fit(" in BLOCKS[index]:
        out = capsys.readouterr().out
        assert SHOWN_REPORT.group(1) in out  # the README shows the real output of its example
        assert f"plot: {tmp_path / 'interval_report.png'}" in out
        assert (tmp_path / "interval_report.png").is_file()


def test_ci_runs_the_readme_test_command_and_it_collects_the_docstring_examples():
    root = README.parent
    command = next(c for c in re.findall(r"```bash\n(.*?)\n```", TEXT, flags=re.S) if '".[test]"' in c)
    ci_lines = [line for line in (root / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci_lines[-1] == command
    assert command.endswith("python -m pytest")
    config = (root / "pyproject.toml").read_text().split("[tool.pytest.ini_options]")[1]
    testpaths = re.search(r"^testpaths = \[(.*?)\]", config, flags=re.M).group(1)
    assert '"lightning_ci"' in testpaths and '"tests"' in testpaths
    assert "--doctest-modules" in re.search(r"^addopts = (.*)$", config, flags=re.M).group(1)
