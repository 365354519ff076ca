"""A small classifier with real decision margins, built in seconds, for precision tests.

An INT8 model of a randomly initialised network has no margins worth measuring, so: GoogLeNet
features (random init, batch-norm statistics from the data) at 96x96 on a synthetic but
learnable 10-class image set (each class a colour cast and a stripe direction over smooth random
texture), and a linear head fitted on those features by ridge regression.
"""

import colorsys

import numpy as np
import torch

CLASSES = 10
SIZE = 96
RIDGE = 100.0
MIX = (0.45, 0.65)  # share of the class pattern in each image (about 95% accuracy)


def learnable_images(count: int, seed: int, size: int = SIZE):
    """N x size x size x 3 images in [0, 1] and their labels."""
    from inception_deploy.preprocess import synthetic_images

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, count)
    texture = synthetic_images(count, size, seed=seed + 1)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = np.empty_like(texture)
    for i, k in enumerate(labels):
        colour = np.array(colorsys.hsv_to_rgb(k / CLASSES, 0.8, 0.9), np.float32)
        angle = np.pi * (k % 4) / 4 + rng.normal(0, 0.15)
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * 6 * (xx * np.cos(angle) + yy * np.sin(angle)))
        mix = rng.uniform(MIX[0], MIX[1])
        images[i] = (1 - mix) * texture[i] + mix * colour * stripes[..., None]
    return np.clip(images, 0, 1).astype(np.float32), labels


def write_images(folder, count: int, seed: int, size: int = SIZE):
    """``count`` learnable images saved as PNGs in the new folder ``folder`` (a calibration set)."""
    from PIL import Image

    folder.mkdir()
    images, _ = learnable_images(count, seed, size)
    for i, image in enumerate(images):
        Image.fromarray((image * 255).round().astype(np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def build(seed: int = 0, train: int = 600, arch: str = "v1", size: int = SIZE):
    """(model in eval mode, preprocessing config): ``arch`` (GoogLeNet) at ``size`` with a fitted
    10-class head."""
    from inception_deploy import calibrate_batchnorm, create_model
    from inception_deploy.models import get_arch
    from inception_deploy.preprocess import normalize

    torch.manual_seed(seed)
    spec = get_arch(arch)
    config = spec.preprocess.with_input_size(size)
    model = create_model(arch, num_classes=CLASSES)
    images, labels = learnable_images(train, seed=seed + 100, size=size)
    x = torch.from_numpy(normalize(images, config))
    calibrate_batchnorm(model, x.split(100))
    parent, _, name = spec.classifier.rpartition(".")  # "fc", or "head.fc2" (InceptionNeXt)
    parent = model.get_submodule(parent)
    head = getattr(parent, name)
    setattr(parent, name, torch.nn.Identity())
    with torch.no_grad():
        features = torch.cat([model(chunk) for chunk in x.split(100)]).double()
    mean = features.mean(0)
    centred = features - mean
    targets = torch.nn.functional.one_hot(torch.from_numpy(labels), CLASSES).double() * 10 - 5
    ridge = centred.T @ centred + RIDGE * torch.eye(features.shape[1], dtype=torch.double)
    weight = torch.linalg.solve(ridge, centred.T @ targets)  # features -> class scores
    head.weight.data = weight.T.float()
    head.bias.data = (targets.mean(0) - mean @ weight).float()
    setattr(parent, name, head)
    return model.eval(), config
