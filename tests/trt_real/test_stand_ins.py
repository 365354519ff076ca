"""Negative controls: the stand-ins refuse what the real bindings refuse, so a call the project
makes that the real API would reject cannot pass unnoticed."""

from pathlib import Path

import pytest


def _builder(trt):
    from inception_deploy.runtime.tensorrt_backend import make_logger

    return trt.Builder(make_logger(trt))


def test_wrong_keyword_is_refused(trt):
    config = _builder(trt).create_builder_config()
    with pytest.raises(TypeError, match="incompatible function arguments"):
        config.set_timing_cache(config.create_timing_cache(b""), ignore_missmatch=False)
    assert config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False) is True


def test_path_where_str_is_needed_is_refused(trt, tmp_path):
    builder = _builder(trt)
    network = builder.create_network(0)
    from inception_deploy.runtime.tensorrt_backend import make_logger

    parser = trt.OnnxParser(network, make_logger(trt))
    with pytest.raises(TypeError, match="incompatible function arguments"):
        parser.parse_from_file(Path(tmp_path / "model.onnx"))


def test_int_where_enum_is_needed_is_refused(trt):
    config = _builder(trt).create_builder_config()
    with pytest.raises(TypeError, match="incompatible function arguments"):
        config.set_flag(1)
    with pytest.raises(TypeError, match="incompatible function arguments"):
        config.set_memory_pool_limit(0, 1 << 20)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 20)


def test_unknown_attribute_and_read_only_property(trt):
    builder = _builder(trt)
    config = builder.create_builder_config()
    with pytest.raises(AttributeError):
        config.max_workspace_size = 1 << 30  # removed in TensorRT 10
    with pytest.raises(AttributeError):
        builder.build_engine  # noqa: B018 - removed in TensorRT 10
    with pytest.raises(TypeError):
        config.builder_optimization_level = "high"
    config.builder_optimization_level = 5
    assert config.builder_optimization_level == 5


def test_real_enum_values_are_used(trt, real_trt):
    assert trt.NetworkDefinitionCreationFlag is real_trt.NetworkDefinitionCreationFlag
    assert trt.DataType is real_trt.DataType and trt.Dims is real_trt.Dims
    major = int(trt.__version__.split(".")[0])
    assert int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == (1 if major == 10 else 0)
    assert hasattr(trt.BuilderFlag, "FP16") == (major == 10)


def test_real_factories_fail_as_an_uninitialised_tensorrt_does(real_trt):
    from inception_deploy.runtime.tensorrt_backend import make_logger

    with pytest.raises(TypeError, match="factory function returned nullptr"):
        real_trt.Builder(make_logger(real_trt))
