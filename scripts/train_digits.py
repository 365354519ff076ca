"""A network whose every layer was trained, for the INT8 comparisons: GoogLeNet (v1) trained from
scratch on scikit-learn's bundled handwritten digits (1,797 8x8 images), upscaled to 64 px in three
channels, in a few minutes on 2 cores; not in CI.

The stand-ins of tests/trained_classifier.py keep random features and fit only the head: their
weights are Kaiming-uniform, where min/max weight ranges are already what an error criterion
would choose, and their activations carry no trained outliers. A trained network has both.

    pip install scikit-learn
    python scripts/train_digits.py --out digits
    # digits/v1_digits.pth (a state dict), digits/images/ (the 797 digits training never saw, PNG)
    inception-export --arch v1 --weights digits/v1_digits.pth --num-classes 10 --input-size 64 \\
        --int8 --calib-dir digits/images --int8-max-drop 2 --int8-holdout 0.25

Training sees each image exactly as the export's preprocessing gives it (the PNG through
``inception_deploy.preprocess``), shifted by up to 4 pixels for augmentation.
"""

import argparse
import time
from pathlib import Path

import numpy as np

SIZE = 64
TRAIN = 1000  # of the 1,797 digits; the other 797 are written out for calibration and judging


def write_digits(out: Path) -> tuple[list[Path], np.ndarray]:
    """Every digit as a 64 px RGB PNG (train/ or images/), and the labels in the same order."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    files = []
    for rank, index in enumerate(order):
        folder = out / ("train" if rank < TRAIN else "images")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (digits.images[index] * (255 / 16)).round().astype(np.uint8)
        image = Image.fromarray(pixels).resize((SIZE, SIZE), Image.BILINEAR).convert("RGB")
        files.append(folder / f"{rank:04d}_digit{digits.target[index]}.png")
        image.save(files[-1])
    return files, digits.target[order]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("digits"))
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()

    import torch

    from inception_deploy import create_model
    from inception_deploy.models import get_arch
    from inception_deploy.preprocess import preprocess

    if args.out.exists():
        raise SystemExit(f"{args.out}: exists; give a new folder")
    files, labels = write_digits(args.out)
    config = get_arch("v1").preprocess.with_input_size(SIZE)
    x = torch.from_numpy(preprocess(files, config))
    y = torch.from_numpy(labels).long()
    train_x, train_y, test_x, test_y = x[:TRAIN], y[:TRAIN], x[TRAIN:], y[TRAIN:]

    torch.manual_seed(0)
    model = create_model("v1", num_classes=10).train()
    steps = args.epochs * (TRAIN // 50)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, total_steps=steps)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        for batch in torch.randperm(TRAIN).split(50)[: TRAIN // 50]:
            shift = [int(v) for v in torch.randint(-4, 5, (2,))]
            images = torch.roll(train_x[batch], shifts=shift, dims=(2, 3))
            loss = torch.nn.functional.cross_entropy(model(images), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        with torch.no_grad():
            accuracy = (torch.cat([model(c) for c in test_x.split(100)]).argmax(1) == test_y).float().mean()
        model.train()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, accuracy on the 797 unseen digits {accuracy:.1%} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
    checkpoint = args.out / "v1_digits.pth"
    torch.save(model.eval().state_dict(), checkpoint)
    print(f"wrote {checkpoint} and {len(test_y)} unseen digits in {args.out / 'images'}")


if __name__ == "__main__":
    main()
