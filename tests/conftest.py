import logging
import os
import sys

import pytest

# tests/reference_transforms.py is imported by tests as a plain module
sys.path.insert(0, os.path.dirname(__file__))
# Reference implementations (torchvision, timm, ...) installed aside by scripts/reference_env.sh
if os.environ.get("INCEPTION_DEPLOY_REFERENCES"):
    sys.path.insert(0, os.environ["INCEPTION_DEPLOY_REFERENCES"])

# tests/trt_real runs once per TensorRT release, in its own process (tests/test_tensorrt_bindings.py)
collect_ignore = [] if os.environ.get("INCEPTION_DEPLOY_TRT_BINDINGS") else ["trt_real"]


@pytest.fixture(autouse=True)
def _info_logs(caplog):
    caplog.set_level(logging.INFO, logger="inception_deploy")


@pytest.fixture(scope="session")
def built_models():
    """Each architecture built once per session (the seven together are ~200M parameters)."""
    from inception_deploy import create_model, get_arch

    cache = {}

    def get(arch):
        arch = get_arch(arch).name  # an alias builds the same model once
        if arch not in cache:
            cache[arch] = create_model(arch)
        return cache[arch]

    return get


@pytest.fixture(scope="session")
def exported(tmp_path_factory, built_models):
    """Every architecture exported once per session with default options (dynamic batch,
    parity on); tests share these files."""
    from inception_deploy import get_arch
    from inception_deploy.export import export_onnx

    folder = tmp_path_factory.mktemp("onnx")
    cache = {}

    def get(arch):
        arch = get_arch(arch).name
        if arch not in cache:
            cache[arch] = export_onnx(built_models(arch), folder / f"{arch}.onnx")
        return cache[arch]

    return get
