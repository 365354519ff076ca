"""inception-parity and inception-bench."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from inception_deploy.cli import main
from inception_deploy.export import export_onnx
from inception_deploy.export.precision import convert_fp16, quantize_int8
from inception_deploy.verify.bench import BenchResult, bench_figure, plot_latency, table


def _cli(*args):
    result = CliRunner().invoke(main, [*map(str, args)])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def v1_random(v1_opset17):
    """inception-export --arch v1 --opset 17 with no weights (random init from the fixed seed)."""
    return v1_opset17


def test_parity_passes_for_an_honest_export(v1_random, tmp_path):
    report = tmp_path / "report.json"
    code, stdout, _ = _cli("parity", "--arch", "v1", "--onnx", v1_random, "--json", report)
    assert code == 0, stdout
    header, _, row = stdout.splitlines()[:3]
    assert header.split("|")[1].strip() == "artifact" and str(v1_random) in row and "PASS" in row
    data = json.loads(report.read_text())
    assert data["passed"] and data["rows"][0]["images"] == 5 + 8


def test_parity_catches_one_perturbed_weight(v1_random, tmp_path):
    model = onnx.load(str(v1_random))
    fc = next(i for i in model.graph.initializer if list(i.dims) == [1000, 1024])
    weights = onnx.numpy_helper.to_array(fc).copy()
    weights[7, 3] += 0.5  # one of 6.6 million parameters
    fc.CopyFrom(onnx.numpy_helper.from_array(weights, fc.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    code, stdout, _ = _cli("parity", "--arch", "v1", "--onnx", v1_random, "--onnx", broken)
    assert code == 1
    rows = {line.split("|")[1].strip(): line for line in stdout.splitlines()[2:]}
    assert "PASS" in rows[str(v1_random)] and "FAIL" in rows[str(broken)]


def test_parity_judges_each_precision_by_its_thresholds(v1_random, tmp_path):
    fp16 = convert_fp16(v1_random, tmp_path / "fp16.onnx").path
    code, stdout, _ = _cli("parity", "--arch", "v1", "--onnx", fp16, "--synthetic", "0")
    assert "| fp16 " in stdout and code == 0  # random weights: reduced precision is measured, not judged
    row = stdout.splitlines()[2]
    assert 0 < float(row.split("|")[8]) <= 1  # the cosine is measured and shown...
    assert row.split("|")[-2].strip() == "not judged (random weights)"  # ...but no verdict: no PASS or FAIL


def test_parity_needs_the_weights_the_artifact_was_made_from(tmp_path):
    import torch

    from inception_deploy import create_model

    weights = tmp_path / "w.pth"
    torch.save(create_model("v1", num_classes=10).state_dict(), weights)
    path = export_onnx("v1", tmp_path / "w.onnx", weights=weights, num_classes=10, opset=17, check_parity=False).path
    code, _, stderr = _cli("parity", "--arch", "v1", "--onnx", path)
    assert code == 2 and "was exported from w.pth" in stderr and "pass it with --weights" in stderr
    code, stdout, _ = _cli("parity", "--arch", "v1", "--weights", weights, "--onnx", path)
    assert code == 0 and "PASS" in stdout


def test_parity_bad_input(tmp_path):
    code, _, stderr = _cli("parity", "--arch", "v1")
    assert code == 2 and "nothing to check" in stderr
    code, _, stderr = _cli("parity", "--arch", "v1", "--onnx", tmp_path / "missing.onnx")
    assert code == 2 and "no such model file" in stderr
    code, _, stderr = _cli("parity", "--arch", "v1", "--engine", tmp_path / "missing.plan")
    assert code == 2 and stderr.count("\n") == 1


def test_bench_runs_each_point_in_its_own_process(v1_random, tmp_path):
    out = tmp_path / "bench.json"
    code, stdout, stderr = _cli(
        "bench",
        v1_random,
        "--batch-sizes",
        "1",
        "--iterations",
        "2",
        "--warmup",
        "1",
        "--torch-arch",
        "v1",
        "--json",
        out,
    )
    assert code == 0, stderr
    results = json.loads(out.read_text())
    # one batch size: each configuration's process costs ~2 s, and the points are per configuration
    assert [(r["precision"], r["batch"]) for r in results] == [("fp32", 1), ("fp32", 1), ("bf16-channels-last", 1)]
    assert all(r["p50_ms"] > 0 and r["p50_ms"] <= r["p99_ms"] for r in results)
    # interleaved: two rounds of one timed run each per configuration, their spread reported
    assert all(r["rounds"] == 2 and len(r["times_ms"]) == 2 and r["spread"] >= 0 for r in results)
    assert stderr.count("round 1/2: ") == 3 and stderr.count("round 2/2: ") == 3
    assert stderr.index("round 2/2: ") > stderr.rindex("round 1/2: ")  # every configuration, then again
    assert "vs torch fp32" in stdout and "1.00x" in stdout
    assert f"wrote {out}" in stderr


def test_bench_table_ratios():
    rows = [
        BenchResult("torch v3", "torch cpu", "fp32", 8, 400.0, 410.0, 420.0, 20.0),
        BenchResult("m.onnx", "onnxruntime cpu", "int8", 8, 100.0, 110.0, 120.0, 80.0),
        BenchResult("m.onnx", "onnxruntime cpu", "int8", 32, 300.0, 310.0, 320.0, 106.7),
    ]
    lines = table(rows).splitlines()
    assert lines[3].split("|")[9].strip() == "4.00x" and lines[4].split("|")[9].strip() == ""


def test_unstable_figures_are_flagged_in_the_table_the_warning_and_the_plot():
    steady = BenchResult("m.onnx", "onnxruntime cpu", "fp32", 8, 100.0, 101.0, 102.0, 80.0, spread=0.04, rounds=3)
    loaded = BenchResult("m.onnx", "onnxruntime cpu", "fp32", 32, 100.0, 150.0, 160.0, 320.0, spread=0.3, rounds=3)
    tail = BenchResult("n.onnx", "onnxruntime cpu", "fp32", 8, 10.0, 20.0, 35.0, 800.0, spread=0.02, rounds=3)
    assert [r.unstable for r in (steady, loaded, tail)] == [False, True, True]
    lines = table([steady, loaded, tail]).splitlines()
    assert [line.split("|")[10].strip() for line in lines[2:]] == ["±2%", "±15% UNSTABLE", "±1% UNSTABLE"]
    from inception_deploy.verify.bench import unstable_warning

    assert unstable_warning([steady]) is None and unstable_warning([steady, loaded]).startswith("1 of 2 figures")
    pytest.importorskip("matplotlib", reason="matplotlib not installed (pip install 'inception-deploy[bench]')")
    assert "UNSTABLE" in bench_figure([steady, loaded], machine="x", day="y").get_suptitle()
    assert "UNSTABLE" not in bench_figure([steady], machine="x", day="y").get_suptitle()


def test_bench_bad_input(tmp_path):
    assert _cli("bench", "--torch-arch", "v1", "--batch-sizes", "a,b")[0] == 2
    code, _, stderr = _cli("bench", tmp_path / "missing.onnx")
    assert code == 2 and "no such model file" in stderr
    assert "nothing to benchmark" in _cli("bench")[2]


def test_bench_plot(v1_random, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib not installed (pip install 'inception-deploy[bench]')")
    plot = tmp_path / "latency.png"
    code, _, stderr = _cli(
        "bench", v1_random, "--batch-sizes", "1,2", "--iterations", "1", "--warmup", "0", "--plot", plot
    )
    assert code == 0, stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {plot}" in stderr


def test_bench_plot_panels_ticks_and_speedups(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib not installed (pip install 'inception-deploy[bench]')")
    from PIL import Image

    results = [BenchResult("torch v3", "torch cpu", "fp32", b, 100.0 * b, 0, 0, 10.0) for b in (1, 8, 32)]
    results += [
        BenchResult("/far/away/m_int8_cpu.onnx", "onnxruntime cpu", "int8", b, 25.0 * b, 0, 0, 40.0 + b)
        for b in (32, 1, 8)
    ]
    figure = bench_figure(results, machine="Test CPU, 2 cores", day="2026-11-23")
    throughput, latency, speedup = figure.axes
    for ax in (throughput, latency, speedup):
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "8", "32"]
        assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["torch v3 fp32", "m_int8_cpu.onnx int8"]
    assert list(throughput.get_lines()[1].get_ydata()) == [41.0, 48.0, 72.0]  # sorted by batch
    assert [t.get_text() for t in speedup.texts] == ["4.10x", "4.80x", "7.20x", "dashed: torch eager FP32 = 1.00x"]
    title = figure.get_suptitle()
    assert "m_int8_cpu.onnx" in title and "torch v3" in title and "Test CPU, 2 cores, 2026-11-23" in title

    assert len(bench_figure(results[3:], machine="x", day="y").axes) == 2  # no baseline, no speed-up panel
    png = tmp_path / "plot.png"
    plot_latency(results, png)
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 2 * image.height
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]  # nothing temporary left


def test_bench_title_names_each_model_once_and_rounds_are_the_users(v1_random, tmp_path):
    """issue 42: the title repeated "inception_v3.onnx, inception_v3.onnx fp32, ..."; a small bench always
    ran 3 rounds."""
    pytest.importorskip("matplotlib", reason="matplotlib not installed (pip install 'inception-deploy[bench]')")
    results = [
        BenchResult("/w/inception_v3.onnx", backend, precision, 1, 10.0, 0, 0, 100.0)
        for backend, precision in (("onnxruntime cpu", "fp32"), ("openvino CPU", "fp32"), ("openvino CPU", "bf16"))
    ]
    results += [BenchResult(f"torch v3 {mode}", "torch cpu", "fp32", 1, 20.0, 0, 0, 50.0) for mode in ("a", "b")]
    title = bench_figure(results, machine="x", day="y").get_suptitle()
    assert title.splitlines()[0] == "Inception benchmark: inception_v3.onnx, torch v3"
    code, _, stderr = _cli(
        "bench", v1_random, "--batch-sizes", "1", "--iterations", "2", "--warmup", "0", "--rounds", "1"
    )
    assert code == 0, stderr
    assert "round 1/1:" in stderr and "round 1/2" not in stderr and "round 2/" not in stderr


def test_quantized_artifact_row_uses_int8_thresholds(v1_random, tmp_path):
    from inception_deploy.inputs import sample_photos

    calib = tmp_path / "calib"
    calib.mkdir()
    for photo in sample_photos():
        (calib / photo.name).write_bytes(photo.read_bytes())
    int8 = quantize_int8(v1_random, tmp_path / "int8.onnx", target="cpu", calib_dir=calib, progress=False).path
    code, stdout, _ = _cli("parity", "--arch", "v1", "--onnx", int8, "--synthetic", "0")
    row = stdout.splitlines()[2]
    assert "| int8 " in row
    assert np.isfinite(float(row.split("|")[8]))


@pytest.mark.slow
def test_bench_torch_compile_reports_compile_time_apart_from_latency():
    import re

    code, stdout, stderr = _cli(
        "bench",
        "--torch-arch",
        "resnet18",
        "--torch-compile",
        "--batch-sizes",
        "1",
        "--iterations",
        "1",
        "--warmup",
        "0",
    )
    assert code == 0, stderr
    row = next(line for line in stdout.splitlines() if "| compile-bf16-channels-last " in line)
    p50_ms = float(row.split("|")[5])
    compile_s = float(re.search(r"torch\.compile at batch 1: ([0-9.]+) s to compile", stdout).group(1))
    assert compile_s > p50_ms / 1000  # the (slow) first call is not in the latency
    code, _, stderr = _cli("bench", "x.onnx", "--torch-compile")
    assert code == 2 and "--torch-compile needs --torch-arch" in stderr
