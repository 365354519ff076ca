"""Keras checkpoints into our networks: conversion time, parameter counts and logits difference.

For each of keras.applications InceptionV3, InceptionResNetV2 and Xception (random weights,
batch-norm statistics from the shipped photos, as tests/test_keras.py builds them), saved in each
file format: the time ``create_model(arch, weights=FILE)`` takes (read, convert, build, load),
Keras's parameter count against ours, and the largest logit difference on the photos.

    INCEPTION_DEPLOY_REFERENCES=/tmp/inception-refs python scripts/keras_conversion.py

Needs Keras from scripts/reference_env.sh (Keras 3 on the torch backend; no TensorFlow).
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from keras_reference import import_keras, keras_logits, keras_model  # noqa: E402

from inception_deploy.checkpoints.keras import KERAS_NAMES, KERAS_PREPROCESS  # noqa: E402
from inception_deploy.checkpoints.zoo import create_model  # noqa: E402
from inception_deploy.inputs import sample_photos  # noqa: E402
from inception_deploy.preprocess import preprocess  # noqa: E402


def main():
    keras = import_keras()
    if keras is None:
        sys.exit("Keras is not installed: run scripts/reference_env.sh and set INCEPTION_DEPLOY_REFERENCES")
    x = preprocess(sample_photos(), KERAS_PREPROCESS)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for arch, application in KERAS_NAMES.items():
            model = keras_model(keras, arch, nhwc)
            reference = keras_logits(model, nhwc)
            for suffix in (".keras", ".weights.h5", ".h5"):
                path = Path(folder) / f"{arch}{suffix}"
                model.save_weights(path) if suffix == ".weights.h5" else model.save(path)
                start = time.perf_counter()
                ours = create_model(arch, weights=path)
                seconds = time.perf_counter() - start
                with torch.no_grad():
                    logits = ours(torch.from_numpy(x)).double().numpy()
                values = sum(t.numel() for k, t in ours.state_dict().items() if not k.endswith("num_batches_tracked"))
                diff = np.abs(logits - reference).max()
                rows.append(
                    [
                        application,
                        suffix,
                        f"{path.stat().st_size / 1e6:.0f}",
                        f"{seconds:.2f}",
                        f"{model.count_params():,}",
                        f"{values:,}",
                        f"{diff:.2e}",
                        f"{diff / np.abs(reference).max():.2e}",
                        f"{(logits.argmax(1) == reference.argmax(1)).mean():.0%}",
                    ]
                )
                path.unlink()
    print(
        tabulate(
            rows,
            headers=[
                "Keras model",
                "file",
                "MB",
                "convert s",
                "Keras params",
                "our values",
                "max abs",
                "max rel",
                "top-1 agree",
            ],
            tablefmt="github",
        )
    )
    print(
        f"\n{len(sample_photos())} photos; Keras {keras.__version__} on torch {torch.__version__}; 'our values': "
        "parameters and batch-norm statistics (v3 and Inception-ResNet-v2 add a gamma of 1 per batch norm, "
        "which Keras builds with scale=False)"
    )


if __name__ == "__main__":
    main()
