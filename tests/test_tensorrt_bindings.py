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

from trt_real import bindings

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.parametrize("version,cuda_major", bindings.MATRIX, ids=[v for v, _ in bindings.MATRIX])
def test_against_real_bindings(version, cuda_major):
    try:
        bindings.fetch(version, cuda_major)
    except bindings.Unavailable as e:
        pytest.skip(str(e))
    env = {**os.environ, bindings.ENV: version}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra",
                           str(ROOT / "tests" / "trt_real")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1200)
    summary = proc.stdout.strip().splitlines()[-1:] or ["no output"]
    print(f"TensorRT {version} bindings: {summary[0]}")
    assert proc.returncode == 0, f"TensorRT {version}:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
