"""The shape of the code, checked by the test command: the layers import only downward and no
module imports in a cycle (import-linter, contracts in pyproject.toml), and ruff's rules hold."""

import ast
import re
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


def _package_sources():
    for path in sorted((ROOT / "inception_deploy").rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def _texts(node) -> str:
    """The literal text of an expression: its string constants and f-string parts."""
    return " ".join(n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str))


def test_errors_below_the_cli_name_settings_as_the_api_does_and_each_has_a_flag():
    """A Python caller is not told to pass ``--int8-max-drop``: errors raised below cli/ name
    settings through ``errors.setting``, which the CLI maps to its flags while a command runs."""
    from inception_deploy.cli import main
    from inception_deploy.cli.guard import SETTING_FLAGS

    ours = {o for command in main.commands.values() for p in command.params for o in p.opts if o.startswith("--")}
    flagged, names = [], set()
    for path, tree in _package_sources():
        below_cli = "cli" not in path.relative_to(ROOT / "inception_deploy").parts
        for node in ast.walk(tree):
            if below_cli and isinstance(node, ast.Raise) and node.exc is not None:
                if ours & set(re.findall(r"--[a-z][a-z0-9-]*", _texts(node.exc))):
                    flagged.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setting" and node.args:
                if isinstance(node.args[0], ast.Constant):
                    names.add(node.args[0].value)
    assert flagged == []
    assert names and sorted(names - set(SETTING_FLAGS)) == []
