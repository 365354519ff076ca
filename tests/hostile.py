"""Helpers that build hostile inputs in a temporary folder: a tiny real ONNX classifier whose
metadata can be doctored, and ways to run a command as an unprivileged user."""

from __future__ import annotations

import contextlib
import json
import os
import pwd

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from inception_deploy.metadata import METADATA_KEY

TINY_SIZE = 16


def tiny_metadata(classes: int = 3) -> dict:
    return {
        "schema": 1,
        "arch": "tiny",
        "num_classes": classes,
        "precision": "fp32",
        "batch": None,
        "max_batch": 8,
        "preprocess": {
            "input_size": TINY_SIZE,
            "resize_size": 18,
            "interpolation": "bilinear",
            "mean": [0.5, 0.5, 0.5],
            "std": [0.25, 0.25, 0.25],
            "channel_order": "RGB",
            "pixel_scale": 1.0,
        },
        "labels": {"source": "test", "names": [f"class {i}" for i in range(classes)]},
    }


def tiny_classifier(path, metadata: dict | str | None = None, classes: int = 3, size: int = TINY_SIZE):
    """A real ONNX image classifier (global average pool, then a linear layer) with ``metadata``
    (a document, or a raw string stored as is) under the toolkit's key."""
    weights = np.random.default_rng(0).normal(size=(classes, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["features"]),
            helper.make_node("Gemm", ["features", "W"], ["logits"], transB=1),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    document = tiny_metadata(classes) if metadata is None else metadata
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = document if isinstance(document, str) else json.dumps(document)
    onnx.save(model, str(path))
    return path


@contextlib.contextmanager
def unprivileged():
    """Run the body as the 'nobody' user when we are root (root reads any file, so permission
    errors only happen to others); as anyone else, run it as is. The effective user id is
    switched, so the process can switch back."""
    if os.geteuid() != 0:
        yield
        return
    nobody = pwd.getpwnam("nobody")
    os.setegid(nobody.pw_gid)
    os.seteuid(nobody.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def cli(*args):
    """A command through click's runner: (exit code, stdout, stderr); an uncaught exception fails."""
    from click.testing import CliRunner

    from inception_deploy.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def one_error_line(stderr: str, *fragments) -> str:
    """The one ``error:`` line of ``stderr`` (no traceback), holding each of ``fragments``."""
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
