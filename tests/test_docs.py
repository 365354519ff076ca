"""The documentation: the MkDocs site builds with --strict (a broken link, a renamed command or an
API name that no longer exists fails it), and the README stays a front door whose links into the
docs resolve."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text("utf-8")


def test_the_site_builds_strictly_with_the_generated_references(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    assert mkdocs, "mkdocs is not installed: pip install -e '.[docs]'"
    run = subprocess.run(
        [mkdocs, "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert run.returncode == 0, run.stderr[-4000:]
    cli = (tmp_path / "site" / "cli" / "index.html").read_text("utf-8")
    assert all(f"inception {command}" in cli for command in ("export", "run", "parity", "bench", "eval", "serve"))
    assert "--calib-dir" in cli
    api = (tmp_path / "site" / "python-api" / "index.html").read_text("utf-8")
    assert "export_onnx" in api and "CalibrationRequest" in api


def test_the_readme_is_a_front_door_whose_links_resolve():
    assert len(README.splitlines()) <= 300
    links = re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)\)", README)
    assert "docs/cli.md" in links and "CHANGELOG.md" in links
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert not missing, missing
