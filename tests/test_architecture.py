"""The shape of the code, checked by the test command: the layers import only downward and no
module imports in a cycle (import-linter, contracts in pyproject.toml), and ruff's rules hold."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    """A console script installed beside this Python (the test extra installs both)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


def test_layers_import_only_downward_and_nothing_imports_in_a_cycle():
    run = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "2 kept, 0 broken" in run.stdout


def test_ruff_finds_nothing_and_the_code_is_formatted():
    for command in (["check"], ["format", "--check"]):
        run = subprocess.run(
            [_tool("ruff"), *command, "inception_deploy", "tests", "scripts"], cwd=ROOT, capture_output=True, text=True
        )
        assert run.returncode == 0, " ".join(command) + "\n" + run.stdout[-4000:]
