"""Layers an INT8 model keeps float, named by the PyTorch modules that made them.

Users name layers as they know them, by module path (``Mixed_7c.branch3x3_1.conv``) or a glob
over paths (``Mixed_7*``); the ONNX graph knows them as nodes. ``metadata.module_paths`` maps one
to the other. What an INT8 export kept float, and why, is written beside it as
``<INT8 file stem>.precision.json``, which ``--int8-keep-float FILE`` reads back to reproduce the
placement without a search.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from ..errors import InceptionDeployError
from ..fileio import json_kind, write_json
from ..metadata import load_json, module_paths
from ..models.registry import canonical_arch
from .qdq import QUANTIZED_OPS

PRECISION_SUFFIX = ".precision.json"
PRECISION_SCHEMA = 1
PRECISION_FILE = json_kind("a precision file of inception-deploy", ("schema", "arch", "float_modules"))


def precision_file(int8_path: str | os.PathLike) -> Path:
    """Where the precision file of an INT8 model lies: beside it, ``<stem>.precision.json``."""
    int8_path = Path(int8_path)
    return int8_path.with_name(int8_path.stem + PRECISION_SUFFIX)


def keep_float_patterns(values, arch: str) -> list[tuple[str, str]]:
    """(pattern, why) for each ``--int8-keep-float`` value: a precision file contributes its module
    paths (and must have been made for ``arch``), anything else is a glob over module paths."""
    patterns = []
    for value in values:
        value = str(value)
        if value.endswith(".json") or Path(value).is_file():
            patterns += [(module, f"precision file {value}") for module in read_precision_file(value, arch)]
        else:
            patterns.append((value, f"--int8-keep-float {value}"))
    return patterns


def read_precision_file(path: str | os.PathLike, arch: str) -> list[str]:
    """The module paths a precision file keeps float; one line naming the file when it is missing,
    malformed, or made for another architecture."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as e:
        raise InceptionDeployError(f"{path}: cannot read this precision file ({e.strerror or e})") from None
    document = load_json(text, path, "precision file")
    modules = document.get("float_modules") if isinstance(document, dict) else None
    if not isinstance(modules, list) or not all(
        isinstance(m, dict) and isinstance(m.get("module"), str) for m in modules
    ):
        raise InceptionDeployError(
            f"{path}: not a precision file (expected an object with a float_modules list of {{module, why}})"
        )
    made_for = document.get("arch")
    if not isinstance(made_for, str) or canonical_arch(made_for) != canonical_arch(arch):
        raise InceptionDeployError(f"{path}: was made for arch {made_for}, not {arch}")
    return [m["module"] for m in modules]


def quantizable_layers(graph) -> dict[str, list[str]]:
    """Module path -> the nodes INT8 may quantize that it produced (a Conv, or pooling: a functional
    pool is named by the module whose forward calls it, so one path may hold several), in graph order."""
    paths = module_paths(graph)
    layers: dict[str, list[str]] = {}
    for node in graph.node:
        if node.op_type in QUANTIZED_OPS and node.name in paths:
            layers.setdefault(paths[node.name], []).append(node.name)
    return layers


def match_modules(patterns: list[tuple[str, str]], modules: list[str], arch: str) -> dict[str, str]:
    """Module path -> why it stays float, for every module a pattern matches (in ``modules``'
    order); a pattern that matches none is an error naming it and some paths that exist. ``modules``:
    the paths of the layers INT8 quantizes (``quantizable_layers``), or of every module of a network."""
    chosen: dict[str, str] = {}
    for pattern, why in patterns:
        matched = fnmatch.filter(modules, pattern)
        if not matched:
            examples = ", ".join(modules[:2] + modules[-1:])
            raise InceptionDeployError(
                f"{why}: matches no layer of {arch} (its paths look like {examples}; "
                f"globs such as 'Mixed_7*' match across dots)"
            )
        for module in matched:
            chosen.setdefault(module, why)
    return {module: chosen[module] for module in modules if module in chosen}


def write_precision_file(path: str | os.PathLike, arch: str, target: str, calibration_sha: str, kept: dict) -> None:
    """The placement of one INT8 export, enough to reproduce it: ``kept`` is module -> why."""
    write_json(
        path,
        {
            "schema": PRECISION_SCHEMA,
            "arch": arch,
            "int8_target": target,
            "calibration_sha256": calibration_sha,
            "float_modules": [{"module": module, "why": why} for module, why in kept.items()],
        },
        PRECISION_FILE,
    )
