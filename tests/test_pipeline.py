"""The deploy pipeline as one API call, and the CLI that only parses and prints it."""
import importlib.util
import json

from click.testing import CliRunner

from inception_deploy import deploy
from inception_deploy.cli import main


def test_deploy_runs_every_stage_and_announces_each(tmp_path, capsys):
    lines = []
    result = deploy("v1", tmp_path / "g.onnx", opset=17, fp16=True, progress=lines.append)
    assert [a.path.name for a in result.artifacts] == ["g.onnx", "g_fp16.onnx"]
    assert all(a.path.is_file() for a in result.artifacts)
    fp32, fp16 = result.artifacts
    assert fp32.parity.passed and all(r.judged for r in fp32.parity.rows)  # FP32 is always judged
    assert fp16.parity.rows and not any(r.judged for r in fp16.parity.rows)  # random weights: measured only
    assert result.failed == []
    assert lines[0] == "exporting v1 (224x224) with torch's torchscript exporter..."
    assert lines[1].startswith("checking parity against eager PyTorch on 13 images at batch sizes 1, 8")
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
        "astronaut.jpg", "camera.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]


def test_every_command_has_version():
    for command in ("export", "run", "calibrate", "parity", "bench", "build"):
        result = CliRunner().invoke(main, [command, "--version"])
        assert result.exit_code == 0 and result.stdout.startswith("inception-deploy, version ")
