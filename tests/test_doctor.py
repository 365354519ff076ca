"""inception doctor: one line per fact on any machine, never a traceback."""

import json

from click.testing import CliRunner

from inception_deploy import doctor
from inception_deploy.cli import main


def test_doctor_reports_this_machine():
    import onnxruntime as ort

    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.split()[-2:] == ["CPUExecutionProvider", "loads"] for line in lines)
    assert any(f"onnxruntime      {ort.__version__}" in line for line in lines)
    assert any("advice" in line for line in lines)
    facts = json.loads(CliRunner().invoke(main, ["doctor", "--json"]).stdout)
    names = [f["name"] for f in facts]
    assert names[:2] == ["python", "inception-deploy"] and "tensorrt" in names and "cuda-python" in names
    assert {"name", "value", "ok"} == set(facts[0])


def test_a_broken_probe_is_one_fact(monkeypatch):
    def broken():
        raise RuntimeError("libcudart.so.13: cannot open shared object file\nmore detail")

    monkeypatch.setattr(doctor, "_tensorrt", broken)
    facts = doctor.diagnose()
    assert doctor.Fact("tensorrt", "error: libcudart.so.13: cannot open shared object file", False) in facts


def test_advice_names_the_extra_for_the_driver():
    facts = [
        doctor.Fact("gpu", "NVIDIA A10, 550.54.15, 8.6", True),
        doctor.Fact("tensorrt", "not installed"),
        doctor.Fact("torch", "2.13.0", True),
    ]
    tips = [f.value for f in doctor._advice(facts)]
    assert "TensorRT engines: pip install 'inception-deploy[tensorrt-cu12]' (driver 550.54.15)" in tips
    facts[0] = doctor.Fact("gpu", "NVIDIA H100, 580.65.06, 9.0", True)
    assert any("[tensorrt-cu13]" in f.value for f in doctor._advice(facts))
