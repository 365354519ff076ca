"""Follow the source file of an INT8 export call by call through the package.

    python scripts/int8_path.py [--workdir DIR] [--images 60]

Exports v1 at 96 px (FP32, not traced), then traces ``deploy`` making its INT8 file (cpu target,
accuracy budget of 100 points on a held-out share: the budget path, which lists the calibration
folder most) with ``sys.setprofile``: every call of a function of the package that receives the
FP32 file's path as an argument, in order. Prints the modules it passes through, the hops between
modules, how many of them go back up to a higher layer (the import-linter layers of
pyproject.toml) and how many go back into a module it had already left; how often artifact
metadata is parsed and written; how often the calibration folder is listed; and every call, with
or without the path, from a lower layer into a higher one (progress callbacks and the like). Issue 43's targets:
<= 20 hops, <= 5 up, metadata parsed once and written once per file, the folder listed once.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "inception_deploy"


def layer_of() -> dict[str, int]:
    """Top-level module or package -> its layer's rank (0: cli, the highest)."""
    contract = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    return {name.strip(): rank for rank, layer in enumerate(contract["layers"]) for name in layer.split("|")}


def module_of(filename: str) -> str | None:
    path = Path(filename)
    if PACKAGE not in path.parents:
        return None
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--images", type=int, default=100, help="calibration images to make (>= 100)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="int8-path-"))
    workdir.mkdir(parents=True, exist_ok=True)

    import numpy as np
    from PIL import Image

    import inception_deploy as idp
    from inception_deploy.models.registry import get_arch

    folder = workdir / "calib"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(args.images):
        Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    source = workdir / "v1.onnx"
    request = idp.ExportRequest("v1", source, preprocess=get_arch("v1").preprocess.with_input_size(96))
    idp.deploy(request, verify=idp.VerifyRequest(parity=False), engine=idp.EngineOptions("no"))

    wanted = {str(source), str(source.resolve())}
    layers = layer_of()
    path, parsed, written, listed, upward = [], Counter(), Counter(), 0, Counter()

    def profile(frame, event, _arg):
        nonlocal listed
        if event != "call":
            return
        module = module_of(frame.f_code.co_filename)
        if module is None:
            return
        name = frame.f_code.co_name
        caller = module_of(frame.f_back.f_code.co_filename) if frame.f_back else None
        if caller and layers[caller.split(".")[0]] > layers[module.split(".")[0]]:
            upward[f"{caller} -> {module}.{name}"] += 1  # a lower layer calling a higher one back
        if module == "metadata" and name == "validate_metadata":
            parsed[str(frame.f_locals.get("source"))] += 1
        if module == "metadata" and name == "set_onnx_metadata":
            written[name] += 1
        if module == "inputs" and name == "scan_folder":
            listed += 1
        if name == "__fspath__":  # a path-like object giving its path is not a hop
            return
        values = frame.f_locals.values()
        if any(isinstance(v, (str, os.PathLike)) and os.fspath(v) in wanted for v in values):
            path.append((module, name))

    sys.setprofile(profile)
    try:  # the request too: it lists the calibration folder
        int8 = idp.Int8Request(idp.CalibrationRequest(folder, images=args.images), target="cpu", max_drop=100.0)
        idp.deploy(request, int8=int8, verify=idp.VerifyRequest(parity=False), engine=idp.EngineOptions("no"))
    finally:
        sys.setprofile(None)

    modules = [module for module, _ in path]
    hops = [(a, b) for a, b in zip(modules, modules[1:]) if a != b]
    up = [(a, b) for a, b in hops if layers[b.split(".")[0]] < layers[a.split(".")[0]]]
    seen, back = {modules[0]} if modules else set(), 0
    for _, b in hops:
        back += b in seen
        seen.add(b)
    print("the FP32 file's path, call by call:")
    for module, name in path:
        print(f"  {module}.{name}")
    print(f"modules: {len(set(modules))}; hops between modules: {len(hops)}; back up a layer: {len(up)}; ")
    print(f"back into a module already left: {back}")
    print(f"metadata parsed: {sum(parsed.values())} ({dict(parsed)}); written: {sum(written.values())}")
    print(f"calibration folder listed: {listed}")
    print(f"calls from a lower layer back up into a higher one (callbacks): {sum(upward.values())}")
    for call, count in upward.most_common():
        print(f"  {count:5d} {call}")


if __name__ == "__main__":
    main()
