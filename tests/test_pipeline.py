"""The deploy pipeline as one API call, and the CLI that only parses and prints it."""

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from commands import QUICK_V1_INT8_CPU

from inception_deploy import ExportRequest, Fp16Request, deploy
from inception_deploy.cli import main
from inception_deploy.progress import heartbeat


def test_deploy_runs_every_stage_and_announces_each(tmp_path, capsys):
    lines = []
    result = deploy(ExportRequest("v1", tmp_path / "g.onnx", opset=17), fp16=Fp16Request(), progress=lines.append)
    assert [a.path.name for a in result.artifacts] == ["g.onnx", "g_fp16.onnx"]
    assert all(a.path.is_file() for a in result.artifacts)
    fp32, fp16 = result.artifacts
    assert fp32.parity.passed and all(r.judged for r in fp32.parity.rows)  # FP32 is always judged
    assert fp16.parity.rows and not any(r.judged for r in fp16.parity.rows)  # random weights: measured only
    # one vocabulary in the API, the table and the exit code: measured only is neither passed nor failed
    assert fp32.parity.verdict == "pass" and fp16.parity.verdict == "not judged"
    assert not fp16.parity.passed and not fp16.parity.failed
    assert "not judged (random weights)" in fp16.parity.table() and "FAIL" not in fp16.parity.table()
    assert json.loads(json.dumps(fp16.parity.to_dict()))["verdict"] == "not judged"
    assert result.failed == []
    assert lines[0] == "exporting v1 (224x224) with torch's torchscript exporter..."
    assert lines[1] == "checking parity against eager PyTorch on 13 images, one at a time and in batches of up to 8..."
    assert any(line.startswith("converting ") and line.endswith("to FP16...") for line in lines)
    if importlib.util.find_spec("tensorrt") is None:
        assert result.engine is None and "TensorRT is not installed" in result.engine_skipped
    assert capsys.readouterr() == ("", "")  # the API itself prints nothing


def test_export_cli_announces_stages_on_stderr_unless_quiet(tmp_path):
    args = ["export", "--arch", "v1", "--opset", "17", "--no-parity", "--engine", "no", "-o", str(tmp_path / "g.onnx")]
    loud = CliRunner().invoke(main, args)
    assert loud.exit_code == 0, loud.stderr
    assert loud.stderr.startswith("exporting v1 (224x224) with torch's torchscript exporter...")
    assert loud.stdout.startswith(f"wrote {tmp_path / 'g.onnx'} (")
    quiet = CliRunner().invoke(main, args + ["--quiet"])
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout.startswith("wrote ")


def test_run_samples_works_from_any_folder(exported, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run", str(exported("v1").path), "--samples", "--json"])
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["file"].rsplit("/", 1)[-1] for line in result.stdout.splitlines()] == [
        "astronaut.jpg",
        "camera.jpg",
        "chelsea.jpg",
        "coffee.jpg",
        "rocket.jpg",
    ]


def test_every_command_has_version():
    for command in ("export", "run", "calibrate", "parity", "bench", "build"):
        result = CliRunner().invoke(main, [command, "--version"])
        assert result.exit_code == 0 and result.stdout.startswith("inception-deploy, version ")


def test_calib_samples_calibrates_on_the_shipped_photos_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = QUICK_V1_INT8_CPU + ["--calib-samples", "--calib-method", "minmax"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.stderr
    assert "warning: " in result.stderr and "only 5 calibration images" in result.stderr  # honest about it
    cache = json.loads((tmp_path / "googlenet.calib.json").read_text())
    assert cache["images"] == 5
    assert (tmp_path / "googlenet_int8_cpu.onnx").is_file()
    # again without images: the FP32 file and the 5-image cache are reused, each said
    plain = [a for a in args if a != "--calib-samples"]
    again = CliRunner().invoke(main, plain)
    assert again.exit_code == 0, again.stderr
    assert "reusing googlenet.onnx: exported earlier from the same arch, weights and options" in again.stderr
    assert "exporting v1" not in again.stderr and again.stdout.startswith("kept googlenet.onnx (")
    assert "reusing a calibration made from only 5 images (300 or more recommended)" in again.stderr
    other = CliRunner().invoke(main, [a if a != "96" else "128" for a in plain] + ["--calib-samples"])
    assert other.exit_code == 0 and "exporting v1" in other.stderr  # another option: exported again
    both = CliRunner().invoke(main, args + ["--calib-dir", str(tmp_path)])
    assert both.exit_code == 2 and "--calib-dir and --calib-samples" in both.stderr
    neither = CliRunner().invoke(main, ["calibrate", str(tmp_path / "googlenet.onnx")])
    assert neither.exit_code == 2 and "--calib-samples" in neither.stderr


def test_a_reused_fp32_export_keeps_its_recorded_parity_unless_asked_to_recheck(tmp_path, monkeypatch):
    """issue 42: reusing the FP32 file re-ran its parity (30 of a 39 s reuse); the same export request
    made the same file, so the parity recorded in it stands, and is shown."""
    monkeypatch.chdir(tmp_path)
    args = ["export", "--arch", "v1", "--opset", "17", "--input-size", "96", "--engine", "no", "--fp16"]
    measured = "checking parity against eager PyTorch"
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.stderr
    assert first.stderr.count(measured) == 2  # FP32 and FP16
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.stderr
    assert again.stderr.count(measured) == 1  # FP16 only: it was written again
    assert "parity recorded when googlenet.onnx was written: pass" in again.stderr
    assert again.stdout.startswith("kept googlenet.onnx (") and "| PASS" in again.stdout  # the recorded table
    recheck = CliRunner().invoke(main, args + ["--recheck-parity"])
    assert recheck.exit_code == 0 and recheck.stderr.count(measured) == 2, recheck.stderr


SLOW_TORCH = """
import sys, time

class SlowTorch:  # PyTorch's import made 2 s slower: a busy machine's
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            time.sleep(2)
            sys.stderr.write("<torch imported>\\n")
        return None

sys.meta_path.insert(0, SlowTorch())
from inception_deploy.cli import main
sys.argv = ["inception"] + sys.argv[1:]
main()
"""


@pytest.mark.parametrize(
    "args",
    [
        ["export", "--arch", "v1", "--opset", "7"],  # refused once PyTorch has loaded: the line came first
        ["parity", "--arch", "v1", "--onnx", "missing.onnx"],
        ["eval", "--arch", "v1", "--data", "."],
    ],
)
def test_the_first_line_comes_before_pytorch_has_loaded(args, tmp_path):
    """issue 42: the first line came after 3-16 s (after torch's import); now within a second."""
    run = subprocess.run(
        [sys.executable, "-c", SLOW_TORCH, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    lines = run.stderr.splitlines()
    assert "<torch imported>" in lines, run.stderr
    assert lines.index("<torch imported>") > 0 and lines[0].startswith("loading PyTorch"), run.stderr


def test_a_stage_says_what_it_does_then_that_it_still_does(tmp_path):
    from inception_deploy.progress import stage

    lines = []
    with stage(lines.append, "exporting", every=0.05):
        time.sleep(0.18)
    assert lines[0] == "exporting..." and len(lines) >= 3 and lines[1].startswith("still exporting (")


def test_piped_progress_is_whole_lines_and_messages_never_land_on_a_bar(tmp_path):
    """issue 42: "...20/20 [00:12<00:00] warning: calib: ..." when piped."""
    from hostile import tiny_classifier

    tiny = tiny_classifier(tmp_path / "tiny.onnx")
    run = subprocess.run(
        [str(Path(sys.executable).with_name("inception-calibrate")), str(tiny), "--calib-samples"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "\r" not in run.stderr
    assert any(line.startswith("calibrating:") for line in run.stderr.splitlines())  # the bar, as a line
    warnings = [line for line in run.stderr.splitlines() if "warning:" in line]
    assert warnings and all(line.startswith("warning: ") for line in warnings), run.stderr


def test_heartbeat_reports_elapsed_time_while_the_body_runs():
    lines = []
    with heartbeat(lines.append, "building the engine", every=0.05):
        time.sleep(0.18)
    count = len(lines)
    time.sleep(0.12)
    assert count >= 2 and len(lines) == count  # beats while running, silent once done
    assert all(line.startswith("still building the engine (") and line.endswith(" s)...") for line in lines)


def test_a_cache_made_another_way_does_not_override_what_is_asked_now(tmp_path, monkeypatch):
    """After a --calib-samples demonstration (5 images, minmax), naming a real folder or another
    method recalibrates the default cache instead of silently reusing the demonstration's."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    base = QUICK_V1_INT8_CPU
    assert CliRunner().invoke(main, base + ["--calib-samples", "--calib-method", "minmax"]).exit_code == 0
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(8):
        Image.effect_noise((120, 100), 40 + i).convert("RGB").save(calib / f"{i}.png")
    result = CliRunner().invoke(main, base + ["--calib-dir", str(calib), "--calib-method", "minmax"])
    assert result.exit_code == 0, result.stderr
    assert "made from 5 images, 8 asked for and available" in result.stderr
    assert json.loads((tmp_path / "googlenet.calib.json").read_text())["images"] == 8
    result = CliRunner().invoke(main, base + ["--calib-dir", str(calib), "--calib-method", "minmax"])
    assert "reusing calibration cache googlenet.calib.json (8 images, minmax)" in result.stderr  # same ask: reused
    result = CliRunner().invoke(main, base + ["--calib-dir", str(calib), "--calib-method", "percentile"])
    assert "made with minmax, percentile 99.99 asked for" in result.stderr
    assert "computing percentile thresholds for " in result.stderr and " tensors from 8 images..." in result.stderr
    assert json.loads((tmp_path / "googlenet.calib.json").read_text())["method"] == "percentile"
    named = CliRunner().invoke(
        main, base + ["--calib-dir", str(calib), "--calib-cache", "googlenet.calib.json", "--calib-method", "entropy"]
    )
    assert (
        named.exit_code == 2
        and "stale calibration cache: made with percentile 99.99, entropy asked for" in named.stderr
    )


def test_a_model_meets_the_wrong_arch(v1_opset17):
    path = str(v1_opset17)
    run = CliRunner().invoke(main, ["run", path, "--samples", "--arch", "v3", "--json"])
    assert run.exit_code == 0, run.stderr
    assert (
        f"warning: {path} was exported from v1 and carries its preprocessing and labels; --arch v3 ignored"
        in run.stderr
    )
    assert "randomly initialised weights: its labels mean nothing" in run.stderr
    parity = CliRunner().invoke(main, ["parity", "--arch", "v3", "--onnx", path])
    assert parity.exit_code == 2 and parity.stdout == ""
    assert parity.stderr.strip() == f"error: {path}: was exported from arch v1, not v3: pass --arch v1"


def test_calibration_options_without_int8_and_a_file_for_a_folder(tmp_path):
    out = str(tmp_path / "g.onnx")
    result = CliRunner().invoke(main, ["export", "--arch", "v1", "-o", out, "--calib-samples"])
    assert result.exit_code == 2 and result.stderr.startswith(
        "error: --calib-dir, --calib-samples and --calib-cache need --int8"
    )
    result = CliRunner().invoke(main, ["export", "--arch", "v1", "-o", out, "--fp16-io"])
    assert result.exit_code == 2 and "--fp16-io (fp16_io) needs --fp16" in result.stderr
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder")
    result = CliRunner().invoke(main, ["export", "--arch", "v1", "-o", out, "--int8", "--calib-dir", str(notes)])
    assert result.exit_code == 2 and result.stderr.strip() == f"error: {notes}: a file, not a folder of images"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_quiet_int8_export_prints_no_bar(tmp_path):
    out = str(tmp_path / "g.onnx")
    result = CliRunner().invoke(
        main,
        QUICK_V1_INT8_CPU + ["-o", out] + ["--calib-samples", "--calib-method", "minmax", "-q"],
    )
    assert result.exit_code == 0, result.stderr
    assert "calibrating" not in result.stderr and "img/s" not in result.stderr
    assert "warning: " in result.stderr  # warnings still reach a quiet run


def test_the_help_names_the_default_output_a_command_really_writes_and_counts_agree():
    """issue 42: --arch v1 writes googlenet.onnx where the help said <arch name>.onnx; "1 layers float"."""
    from inception_deploy.calibration.budget import BudgetReport, Trial
    from inception_deploy.pipeline import default_output

    help_text = " ".join(CliRunner().invoke(main, ["export", "-h"]).output.split())
    assert f"{default_output('v1')} for v1" in help_text and default_output("v1").name == "googlenet.onnx"
    chosen = Trial(1, 0.25, (0.0, 0.9), "onnxruntime", 0.001, 0.99)
    report = BudgetReport(1, "calib", 400, "top-1 agreement", chosen, ["Mixed_7c"], 0.99, 0.98)
    assert "INT8 budget 1 point (" in report.summary() and "; 1 layer float: Mixed_7c;" in report.summary()
    report.kept, report.max_drop = ["a", "b"], 2
    assert "INT8 budget 2 points (" in report.summary() and "; 2 layers float: a, b;" in report.summary()
