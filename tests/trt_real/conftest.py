"""Install the stand-ins built on the real bindings as ``tensorrt`` and ``cuda.bindings.runtime``."""

import os
import sys

import pytest

from trt_real import bindings, cuda_double, double

VERSION = os.environ[bindings.ENV]
REAL_TRT, REAL_CUDART = bindings.import_real(bindings.fetch(VERSION, dict(bindings.MATRIX)[VERSION]))
CUDART = cuda_double.make(REAL_CUDART)
TRT = double.make(REAL_TRT, CUDART)
sys.modules["tensorrt"] = TRT
sys.modules["cuda.bindings.runtime"] = CUDART
sys.modules["cuda.bindings"].runtime = CUDART


@pytest.fixture
def trt():
    return TRT


@pytest.fixture
def real_trt():
    return REAL_TRT


@pytest.fixture
def cudart():
    CUDART._device.update(cuda_double.DEVICE)
    yield CUDART
    CUDART._device.update(cuda_double.DEVICE)
