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


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """The trained-head classifier (tests/trained_classifier.py), built and exported once per run:
    its model, preprocessing config and FP32 ONNX (opset 17, parity checked). Tests write what
    they derive from it into folders of their own."""
    import trained_classifier as tc

    from inception_deploy.export import export_onnx

    model, config = tc.build()
    fp32 = export_onnx(model, tmp_path_factory.mktemp("trained") / "small.onnx", opset=17, preprocess=config).path
    return {"model": model, "config": config, "fp32": fp32}


@pytest.fixture(scope="session")
def v1_opset17(tmp_path_factory):
    """inception-export --arch v1 --opset 17 with no weights (random init from the fixed seed), once per
    run: the TorchScript exporter's file (tests that edit it work on a copy)."""
    from inception_deploy.export import export_onnx

    return export_onnx(
        "v1", tmp_path_factory.mktemp("v1_opset17") / "googlenet.onnx", opset=17, check_parity=False
    ).path
