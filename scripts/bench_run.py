"""End-to-end throughput of inception-run vs model-only throughput, same model, same batch size.

    python scripts/bench_run.py [--model M.onnx] [--images DIR] [--count 500] [--batch-size 8]

Without --model, Inception v3 (FP32, random weights: speed does not depend on them) is exported
to a temporary folder. Without --images, --count real-size JPEGs (640x480 to 1280x960, quality
90) are made from the shipped photos. Model-only feeds already-decoded batches to the backend;
end-to-end is Predictor.predict over the files (decode + preprocess in threads, overlapped with
inference). Both run once untimed on a few images first.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from inception_deploy.inputs import expand_inputs, sample_photos
from inception_deploy.preprocess import preprocess
from inception_deploy.runtime import Predictor


def calibration_images(calib_dir, tmp: Path, count: int) -> Path:
    """``calib_dir`` when given, else ``count`` JPEGs made from the shipped photos in ``tmp``/calib."""
    if calib_dir is not None:
        return Path(calib_dir)
    folder = tmp / "calib"
    folder.mkdir()
    make_images(folder, count)
    return folder


def make_images(folder: Path, count: int) -> list[str]:
    rng = np.random.default_rng(0)
    photos = [Image.open(p).convert("RGB") for p in sample_photos()]
    for i in range(count):
        width = int(rng.integers(640, 1281))
        size = (width, width * 3 // 4) if rng.random() < 0.7 else (width * 3 // 4, width)
        image = photos[i % len(photos)].resize(size, Image.BICUBIC)
        if rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        image.save(folder / f"img{i:04d}.jpg", quality=90)
    return sorted(str(p) for p in folder.glob("*.jpg"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model")
    parser.add_argument("--images")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from inception_deploy.export import export_onnx

            model = str(export_onnx("v3", Path(tmp) / "inception_v3.onnx", check_parity=False).path)
        if args.images:
            files = [f for f in expand_inputs([args.images]) if isinstance(f, str)]
        else:
            os.mkdir(Path(tmp) / "images")
            files = make_images(Path(tmp) / "images", args.count)
        predictor = Predictor(model, batch_size=args.batch_size, workers=args.workers)
        print(
            f"model: {model} ({predictor.backend.describe()}), {len(files)} images, batch {predictor.batch_size}, "
            f"{predictor.workers} decode threads, {os.cpu_count()} CPUs"
        )

        batch = preprocess(files[: predictor.batch_size], predictor.config)
        predictor.backend.infer(batch)  # warm-up
        decoded = preprocess(files, predictor.config)
        start = time.perf_counter()
        for i in range(0, len(decoded), predictor.batch_size):
            predictor.backend.infer(decoded[i : i + predictor.batch_size])
        model_only = len(decoded) / (time.perf_counter() - start)
        del decoded

        predictor.predict(files[: predictor.batch_size])  # warm-up
        start = time.perf_counter()
        results = predictor.predict(files)
        end_to_end = len(files) / (time.perf_counter() - start)
        failed = sum(r.error is not None for r in results)

    print(f"model only : {model_only:7.1f} images/s")
    print(
        f"end to end : {end_to_end:7.1f} images/s ({end_to_end / model_only:.0%} of model only"
        f"{f', {failed} failed' if failed else ''})"
    )


if __name__ == "__main__":
    main()
