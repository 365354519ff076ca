"""How soon each command says something, and its longest silence: every line of stdout and
stderr timestamped as it arrives (progress bars' carriage returns count as lines).

    python scripts/silences.py [--workdir DIR]

Runs, in DIR (a scratch folder by default): the README's main job, a parity check, the sensitivity
ranking and layer-by-layer view of an INT8 file, an evaluation piped, and a small bench; prints,
per command, the time to its first line and its longest silence with the line that ended it.
Targets (issue 42): a first line within 1 s, no silence longer than 8 s.
"""

from __future__ import annotations

import argparse
import os
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def timed_lines(command: list[str], cwd: Path) -> tuple[list[tuple[float, str]], int, float]:
    """(seconds since start, line) for each line of stdout and stderr, the exit code, the total."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    selector = selectors.DefaultSelector()
    for stream in (process.stdout, process.stderr):
        selector.register(stream, selectors.EVENT_READ)
    lines, partial, open_streams = [], {process.stdout: b"", process.stderr: b""}, 2
    while open_streams:
        for key, _ in selector.select():
            chunk = os.read(key.fileobj.fileno(), 65536)
            if not chunk:
                selector.unregister(key.fileobj)
                open_streams -= 1
                continue
            now = time.perf_counter() - start
            text = partial[key.fileobj] + chunk
            *complete, partial[key.fileobj] = text.replace(b"\r", b"\n").split(b"\n")
            lines += [(now, line.decode(errors="replace")) for line in complete if line.strip()]
    code = process.wait()
    return lines, code, time.perf_counter() - start


def silence(lines: list[tuple[float, str]], total: float) -> tuple[float, str]:
    """The longest gap between lines (the end counts), and the line that ended it."""
    times = [0.0] + [t for t, _ in lines] + [total]
    texts = [line for _, line in lines] + ["(exit)"]
    gaps = [(b - a, texts[i]) for i, (a, b) in enumerate(zip(times, times[1:]))]
    return max(gaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, help="where to run (default: a new temporary folder)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="silences-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "data" / "class 0").mkdir(parents=True, exist_ok=True)
    run = lambda name, *a: [str(BIN / f"inception-{name}"), *map(str, a)]  # noqa: E731
    commands = [
        ("export v1 (README)", run("export", "--arch", "v1")),
        ("run --samples", run("run", "googlenet.onnx", "--samples")),
        (
            "export v1 INT8 tensorrt",
            run("export", "--arch", "v1", "--int8", "--int8-target", "tensorrt", "--calib-samples"),
        ),
        ("parity", run("parity", "--arch", "v1", "--onnx", "googlenet.onnx")),
        (
            "parity --layerwise --sensitivity",
            run(
                "parity",
                "--arch",
                "v1",
                "--onnx",
                "googlenet.onnx",
                "--onnx",
                "googlenet_int8_tensorrt.onnx",
                "--layerwise",
                "--sensitivity",
                "--samples",
                "5",
            ),
        ),
        ("eval (piped)", run("eval", "--data", "data", "--onnx", "googlenet.onnx", "--arch", "v1")),
        (
            "bench --rounds 1",
            run("bench", "googlenet.onnx", "--batch-sizes", "1", "--rounds", "1", "--torch-arch", "v1"),
        ),
    ]
    from inception_deploy.inputs import sample_photos  # noqa: E402 (only to lay out the eval data)

    for photo in sample_photos():
        (work / "data" / "class 0" / photo.name).write_bytes(photo.read_bytes())
    print(f"in {work}")
    print(f"{'command':36} {'exit':>4} {'total s':>8} {'first line s':>12} {'longest silence s':>18}  ended by")
    for name, command in commands:
        lines, code, total = timed_lines(command, work)
        first = lines[0][0] if lines else total
        gap, ended_by = silence(lines, total)
        print(f"{name:36} {code:4d} {total:8.1f} {first:12.2f} {gap:18.1f}  {ended_by[:60]}")


if __name__ == "__main__":
    main()
