"""keras.applications on Keras 3's torch backend: the reference for loading Keras checkpoints.

Keras comes from the side folder scripts/reference_env.sh fills (INCEPTION_DEPLOY_REFERENCES),
runs on this project's torch, and needs no TensorFlow. ``keras_model`` builds an application
with random weights and realistic batch-norm statistics, so its logits on photos are those of a
working network rather than of an untrained one's 0/1 statistics.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from inception_deploy.checkpoints.keras import KERAS_NAMES


def import_keras():
    """Keras on the torch backend, or None when it is not installed."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    if os.environ.get("INCEPTION_DEPLOY_REFERENCES") and os.environ["INCEPTION_DEPLOY_REFERENCES"] not in sys.path:
        sys.path.insert(0, os.environ["INCEPTION_DEPLOY_REFERENCES"])
    try:
        import keras
    except ImportError:
        return None
    if keras.backend.backend() != "torch":
        raise RuntimeError(f"Keras runs on {keras.backend.backend()}, not torch: unset KERAS_BACKEND")
    return keras


def keras_model(keras, arch: str, images_nhwc: np.ndarray, *, classes: int = 1000, seed: int = 0, top=None):
    """``keras.applications`` model of ``arch`` with random weights (biases and batch-norm offsets
    too), its batch-norm statistics set from ``images_nhwc`` (preprocessed, N x 299 x 299 x 3):
    one training-mode pass with momentum 0 makes every moving mean / variance the statistics
    of its input, as calibrating layer by layer would. ``top``: a function adding layers to the
    headless network (a fine-tuned model's top); default the application's own classifier,
    without softmax (logits)."""
    keras.utils.set_random_seed(seed)
    application = getattr(keras.applications, KERAS_NAMES[arch])
    if top is None:
        model = application(weights=None, classes=classes, classifier_activation=None)
    else:
        base = application(weights=None, include_top=False, input_shape=(299, 299, 3))
        model = keras.Model(base.input, top(keras, base.output))
    return calibrate(keras, model, images_nhwc, seed)


def calibrate(keras, model, images_nhwc: np.ndarray, seed: int = 0):
    """Random biases, batch-norm offsets and scales, and batch-norm statistics from the images
    (nested models too)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        if variable.path.endswith(("bias", "beta", "gamma")):
            base_value = 1.0 if variable.path.endswith("gamma") else 0.0
            variable.assign(base_value + rng.normal(0, 0.1, variable.shape).astype("float32"))
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(images_nhwc, training=True)
    return model


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def keras_logits(model, images_nhwc: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(images_nhwc, verbose=0, batch_size=len(images_nhwc)), np.float64)
