"""Layers an INT8 model keeps float, named by the PyTorch modules that made them.

Users name layers as they know them, by module path (``Mixed_7c.branch3x3_1.conv``) or a glob
over paths (``Mixed_7*``); the ONNX graph knows them as nodes. ``graph.node_modules`` maps one
to the other. What an INT8 export kept float, and why, is written beside it as
``<INT8 file stem>.precision.json``, which ``--int8-keep-float FILE`` reads back to reproduce the
placement without a search.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import InceptionDeployError
from ..fileio import json_kind, small_json, write_json
from ..graph import node_modules
from ..metadata import MAX_DOCUMENT_BYTES, load_json
from ..models.registry import canonical_arch
from .qdq import head_nodes, quantized_op_types

PRECISION_SUFFIX = ".precision.json"
PRECISION_SCHEMA = 1
PRECISION_BUDGET_KEYS = ("max_drop", "drop", "interval", "images", "judged_on", "runtimes", "proven")
PRECISION_FILE = json_kind("a precision file of inception-deploy", ("schema", "arch", "float_modules"))


def precision_file(int8_path: str | os.PathLike) -> Path:
    """Where the precision file of an INT8 model lies: beside it, ``<stem>.precision.json``."""
    int8_path = Path(int8_path)
    return int8_path.with_name(int8_path.stem + PRECISION_SUFFIX)


@dataclass(frozen=True)
class PrecisionFile:
    """A precision file as read: the layers it keeps float, each with why, and the calibration
    their choice was made on."""

    path: Path
    float_modules: list[tuple[str, str]]  # (module path, why it was kept float)
    calibration_sha256: str | None


def keep_float_patterns(values, arch: str) -> tuple[list[tuple[str, str]], list[PrecisionFile]]:
    """(pattern, why) for each ``keep_float`` value, and the precision files among them, each read
    once: a precision file contributes its module paths with the reasons it recorded (and must have
    been made for ``arch``), anything else is a glob over module paths."""
    patterns, files = [], []
    for value in map(str, values):
        if value.endswith(".json") or os.path.exists(value):
            files.append(read_precision_file(value, arch))
            patterns += [(module, f"{value}: {why}") for module, why in files[-1].float_modules]
        else:
            patterns.append((value, f"--int8-keep-float {value}"))
    return patterns, files


def read_precision_file(path: str | os.PathLike, arch: str) -> PrecisionFile:
    """A precision file, read; one line naming the file when it is missing, malformed, or made for
    another architecture."""
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block, a device never end
            raise InceptionDeployError(f"{path}: not a regular file; a precision file is JSON")
        if info.st_size > MAX_DOCUMENT_BYTES:  # before reading: a sparse file can claim gigabytes
            raise InceptionDeployError(
                f"{path}: precision file is {info.st_size / 2**20:.0f} MiB; refusing more than "
                f"{MAX_DOCUMENT_BYTES >> 20} MiB"
            )
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
    calibration = document.get("calibration_sha256")
    return PrecisionFile(
        path,
        [(m["module"], str(m.get("why", "kept float"))) for m in modules],
        calibration if isinstance(calibration, str) else None,
    )


def maybe_quantized(spec, target: str = "tensorrt") -> list[str]:
    """The module paths INT8 may quantize something under, known before the export: on the
    tensorrt target those with a convolution or pooling layer in them (the head, norms and
    activations alone never are); on the cpu target any but the head (ONNX Runtime quantizes
    Concats and sums too). Which really are is known from the exported graph
    (``quantizable_layers``)."""
    import torch  # only here: the export extra

    kinds = (torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.AvgPool2d)
    head = spec.classifier.rpartition(".")[0]  # a head module of its own (InceptionNeXt's "head"), or none

    def in_head(name: str) -> bool:
        return name == spec.classifier or bool(head) and (name == head or name.startswith(f"{head}."))

    return [
        name
        for name, module in spec.meta_model().named_modules()
        if name and not in_head(name) and (target == "cpu" or any(isinstance(m, kinds) for m in module.modules()))
    ]


def quantizable_layers(graph, target: str = "tensorrt") -> dict[str, list[str]]:
    """Module path -> the nodes INT8 quantizes on ``target`` that it produced (a Conv, or pooling: a
    functional pool is named by the module whose forward calls it, so one path may hold several;
    on the cpu target also Concats and sums: ``qdq.quantized_op_types``), in graph order; never the
    head (``qdq.head_nodes``)."""
    ops = set(quantized_op_types(target))
    paths = node_modules(graph)
    head = head_nodes(graph)
    layers: dict[str, list[str]] = {}
    for node in graph.node:
        if node.op_type in ops and node.name in paths and node.name not in head:
            layers.setdefault(paths[node.name], []).append(node.name)
    return layers


def match_modules(patterns: list[tuple[str, str]], modules: list[str], arch: str) -> dict[str, str]:
    """Module path -> why it stays float, for every module a pattern matches (in ``modules``'
    order); a pattern that matches none is an error naming it and some paths that exist. ``modules``:
    the paths of the layers INT8 quantizes (``quantizable_layers``), or of those it may
    (``maybe_quantized``)."""
    chosen: dict[str, str] = {}
    for pattern, why in patterns:
        matched = fnmatch.filter(modules, pattern)
        if not matched:
            examples = ", ".join(modules[:2] + modules[-1:])
            raise InceptionDeployError(
                f"{why}: matches no layer of {arch} that INT8 quantizes (convolutions and pooling, on the cpu target "
                f"Concats and sums too; never the head or norms; paths look like {examples}; globs such as "
                f"'Mixed_7*' match across dots)"
            )
        for module in matched:
            chosen.setdefault(module, why)
    return {module: chosen[module] for module in modules if module in chosen}


def write_precision_file(
    path: str | os.PathLike, arch: str, target: str, calibration_sha: str, kept: dict, replayed=(), budget=None
) -> None:
    """The placement of one INT8 export, enough to reproduce it: ``kept`` is module -> why;
    ``replayed``: the precision files (PrecisionFile) it was asked to repeat; ``budget``: the
    search's BudgetReport, whose verdict and layer ranking (for the next search) the file keeps."""
    document = {
        "schema": PRECISION_SCHEMA,
        "arch": arch,
        "int8_target": target,
        "calibration_sha256": calibration_sha,
        "float_modules": [{"module": module, "why": why} for module, why in kept.items()],
    }
    if replayed:
        document["replayed"] = [{"file": str(r.path), "calibration_sha256": r.calibration_sha256} for r in replayed]
    if budget is not None:
        report = budget.to_dict()  # the metadata's int8_budget, of which the file keeps the verdict
        document["budget"] = {key: report[key] for key in PRECISION_BUDGET_KEYS} | {"verdict": budget.verdict}
        if budget.ranking is not None:
            document["ranking"] = budget.ranking
    write_json(path, document, PRECISION_FILE)


def stored_ranking(path: str | os.PathLike) -> dict | None:
    """The layer ranking an earlier budget search kept in the precision file at ``path``, or None
    (no such file, not ours, no ranking in it: the search ranks again)."""
    document = small_json(Path(path))
    ranking = document.get("ranking") if isinstance(document, dict) else None
    if not (
        isinstance(ranking, dict) and isinstance(ranking.get("key"), str) and isinstance(ranking.get("layers"), list)
    ):
        return None
    layers = ranking["layers"]
    well_formed = all(
        isinstance(row, list) and len(row) == 2 and isinstance(row[0], str) and isinstance(row[1], (int, float))
        for row in layers
    )
    return {"key": ranking["key"], "layers": layers} if well_formed else None
