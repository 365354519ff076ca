"""Peak memory of `inception-run` over a folder of hostile images, next to a folder of ordinary
photos, in one run (each in its own process; peak resident set size of that process).

    python scripts/hostile_memory.py [--model inception_v3.onnx]

The hostile folder holds what once cost gigabytes: thin strips (tiny on disk, huge once their
short side is resized), large RGBA and 16-bit images that need several copies to convert, an
image just under PIL's pixel limit, a decompression bomb, and corrupt files; plus ordinary photos.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def hostile_folder(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16000, 1), (120, 130, 140)).save(folder / "strip_wide.png")
    Image.new("L", (1, 30000), 90).save(folder / "strip_tall.png")
    Image.new("RGBA", (6000, 6000), (10, 20, 30, 128)).save(folder / "rgba_36mp.png", compress_level=1)
    Image.new("RGB", (9400, 9400), (200, 100, 50)).save(folder / "rgb_88mp.jpg", quality=50)
    Image.new("L", (14000, 14000), 0).save(folder / "bomb_196mp.png", compress_level=9)
    Image.fromarray(np.full((4000, 4000), 40000, np.uint16)).save(folder / "gray16_16mp.png")
    (folder / "truncated.jpg").write_bytes((folder / "rgb_88mp.jpg").read_bytes()[:5000])
    ordinary_folder(folder, 8)


def ordinary_folder(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 255, (960, 1280, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"photo_{i}.jpg", quality=85)


def peak_rss_mb(command: list[str]) -> tuple[float, float, int]:
    """(peak MB, seconds, exit code) of ``command`` run in a child process of its own."""
    code = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r)"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    kb, rc = out.stdout.split()[-2:]
    return int(kb) / 1024, seconds, int(rc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="ONNX model (default: a v1 export made here)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model
        if model is None:
            model = str(tmp / "googlenet.onnx")
            subprocess.run(
                ["inception-export", "--arch", "v1", "-o", model, "--no-parity", "--engine", "no"],
                check=True,
                capture_output=True,
            )
        hostile_folder(tmp / "hostile")
        ordinary_folder(tmp / "ordinary", 15)
        print("| folder | images | peak RSS MB | seconds | exit code |\n|---|---|---|---|---|")
        for name in ("ordinary", "hostile"):
            files = len(list((tmp / name).iterdir()))
            mb, seconds, rc = peak_rss_mb(["inception-run", model, str(tmp / name), "--json", "--no-progress"])
            print(f"| {name} | {files} | {mb:.0f} | {seconds:.1f} | {rc} |")


if __name__ == "__main__":
    main()
