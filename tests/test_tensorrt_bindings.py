"""The engine builder and the TensorRT backend against the REAL TensorRT Python bindings.

For each release in ``trt_real.bindings.MATRIX`` the tests in ``tests/trt_real`` run in a process
of their own with that release's real bindings (see tests/trt_real/bindings.py). The wheel
download is the only network step: without the package index these skip with the reason.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from trt_real import bindings, onnx_files

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def onnx_folder(tmp_path_factory):
    """The engine tests' ONNX files, written once here for every release's process."""
    folder = tmp_path_factory.mktemp("trt_onnx")
    onnx_files.write_onnx_files(folder)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("version,cuda_major", bindings.MATRIX, ids=[v for v, _ in bindings.MATRIX])
def test_against_real_bindings(version, cuda_major, request):
    try:
        bindings.fetch(version, cuda_major)
    except bindings.Unavailable as e:
        pytest.skip(str(e))
    env = {**os.environ, bindings.ENV: version, onnx_files.ONNX_FOLDER_ENV: str(request.getfixturevalue("onnx_folder"))}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=-ra",
            str(ROOT / "tests" / "trt_real"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    summary = proc.stdout.strip().splitlines()[-1:] or ["no output"]
    print(f"TensorRT {version} bindings: {summary[0]}")
    assert proc.returncode == 0, f"TensorRT {version}:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
