"""Checkpoint loading: every format users actually have, strict fit, errors that say what to do.

Reads raw state_dicts, ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers, DataParallel
(``module.``) and torch.compile (``_orig_mod.``) prefixes, .pth/.pt/.bin through
``torch.load(weights_only=True)``, .safetensors, and Keras files (``keras_checkpoints``);
downloads published checkpoints with a hash check into a cache folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsError, setting
from ..fileio import Kind, atomic_path, check_input_file, sha256_file
from ..models.registry import ArchSpec, PretrainedWeights, spec_for_model
from ..progress import bar
from .keras import is_keras_file, keras_state_dict

log = logging.getLogger(__name__)

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")
_PREFIXES = ("module.", "_orig_mod.")
_SHOWN = 5  # how many keys of each kind an error lists


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat {name: tensor} dict, unwrapped and de-prefixed."""
    path = Path(path)
    check_input_file(path, "checkpoint", WeightsError)
    if path.suffix == ".safetensors":
        state = _read_safetensors(path)
    else:
        state = _read_torch(path)
    for key in _WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(
            f"{path}: not a state_dict (expected a mapping of parameter names to tensors, "
            f"optionally under 'state_dict' or 'model')"
        )
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _read_torch(path: Path):
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise next to a one-line error
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        raise WeightsError(f"{path}: {_torch_load_problem(str(e))}") from None


def _torch_load_problem(text: str) -> str:
    """torch.load's error as one line of what is wrong with the file. torch's own text suggests
    retrying with weights_only=False, i.e. running whatever code the file holds: never repeat that."""
    refused = re.search(r"unsupported global:? (?:GLOBAL )?(\S+)", text, re.IGNORECASE)
    if refused:
        return (
            f"holds a pickled Python object ({refused.group(1).rstrip('.')}) that safe loading refuses, as "
            f"it could run code; save model.state_dict() instead of the whole model or training state"
        )
    detail = re.search(r"WeightsUnpickler error:\s*(\S.*)", text)
    if detail:
        return f"not a plain tensor checkpoint (safe loading stopped at: {detail.group(1).strip()})"
    if "weights only load failed" in text.lower():
        return "not a plain tensor checkpoint (safe loading refused it)"
    first = (text.strip().splitlines() or ["unknown error"])[0].split(". ")[0].rstrip(".")
    return f"not a readable PyTorch checkpoint ({first})"


def _read_safetensors(path: Path):
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None


def load_weights(model: nn.Module, path: str | os.PathLike, *, label_offset: int | None = None) -> nn.Module:
    """Load ``path`` into ``model`` strictly, or raise a WeightsError saying what does not fit.

    Auxiliary-head keys are dropped (one log line) when the model was built without aux heads, and
    older key names of the reference's own files renamed (torchvision's DenseNet ``norm.1``).
    ``label_offset`` drops that many leading classifier rows (TensorFlow ports carry a
    background class); by default it is applied when the checkpoint has exactly that many extra
    classes and the architecture's published weights are known to carry them. Keras files
    (.keras, .h5, .weights.h5) are converted into the layout first.
    """
    spec = spec_for_model(model)
    expected = model.state_dict()
    if is_keras_file(path):
        if spec is None:
            raise WeightsError(f"{path}: a Keras checkpoint loads only into a network of this zoo (create_model)")
        state = keras_state_dict(model, spec, path)
        label_offset = label_offset or 0  # keras.applications heads have no background class
    else:
        state = read_checkpoint(path)
    if spec is not None:
        state = _rename_legacy_keys(state, spec, path)
        state = _drop_aux(state, spec, expected, path)
        state = _drop_background_class(state, spec, expected, path, label_offset)
    state = _fill_batchnorm_counters(state, expected, path)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        raise WeightsError(_mismatch_message(path, spec, state, expected, missing, unexpected, mismatched))
    _check_values(state, path)
    model.load_state_dict(state, strict=True)
    return model


def _check_values(state, path) -> None:
    """Refuse values no trained network has: NaN or infinity anywhere, a negative batch-norm
    variance (its square root is NaN). Exported as they are, they give NaN logits or a model that
    passes parity with garbage on both sides."""
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = tensor[~torch.isfinite(tensor)]
            raise WeightsError(
                f"{path}: {key} holds {bad.numel()} non-finite value(s) (e.g. {bad[0].item()}); "
                f"the checkpoint is corrupt or its training diverged"
            )
        if key.endswith("running_var") and (tensor < 0).any():
            raise WeightsError(
                f"{path}: {key} holds a negative batch-norm variance ({tensor.min().item():.4g}); "
                f"a variance cannot be negative"
            )


def _rename_legacy_keys(state, spec: ArchSpec, path):
    """Old key names of the reference's own files (torchvision's DenseNet ``norm.1``) to today's."""
    renamed = state
    for pattern, replacement in spec.legacy_keys:
        renamed = {re.sub(pattern, replacement, k): v for k, v in renamed.items()}
    if len(renamed) != len(state):
        raise WeightsError(
            f"{path}: holds both the old and the new name of some entries "
            f"({len(state) - len(renamed)} collide when renamed); save one layout only"
        )
    changed = sum(a != b for a, b in zip(state, renamed))
    if changed:
        log.info("%s: renamed %d entries of the reference's older key layout", path, changed)
    return renamed


def _fill_batchnorm_counters(state, expected, path):
    """Files saved before PyTorch 0.4.1 (torchvision's DenseNet, Cadene's ports) have no
    ``num_batches_tracked``: a training-only counter that inference never reads. BatchNorm's own
    loader sets it to 0 for such files; so does this, instead of calling the keys missing."""
    absent = [
        k
        for k in expected
        if k.endswith(".num_batches_tracked")
        and k not in state
        and k.removesuffix("num_batches_tracked") + "running_mean" in state
    ]
    if not absent:
        return state
    log.info("%s: no num_batches_tracked in %d BatchNorm layers (an older PyTorch's file); set to 0", path, len(absent))
    return {**state, **{k: torch.zeros_like(expected[k]) for k in absent}}


def _drop_aux(state, spec: ArchSpec, expected, path):
    aux_prefixes = tuple(f"{m}." for m in spec.aux_modules)
    if not aux_prefixes or any(k.startswith(aux_prefixes) for k in expected):
        return state
    kept = {k: v for k, v in state.items() if not k.startswith(aux_prefixes)}
    if len(kept) != len(state):
        log.info(
            "%s: dropped %d auxiliary-head entries (%s): the model has no aux heads",
            path,
            len(state) - len(kept),
            ", ".join(spec.aux_modules),
        )
    return kept


def _drop_background_class(state, spec: ArchSpec, expected, path, label_offset):
    offset = label_offset
    if offset is None:
        offset = spec.pretrained.label_offset if spec.pretrained else 0
    weight_key, bias_key = f"{spec.classifier}.weight", f"{spec.classifier}.bias"
    if not offset or weight_key not in state or weight_key not in expected:
        return state
    if state[weight_key].shape[0] != expected[weight_key].shape[0] + offset:
        return state
    log.info("%s: dropped %d leading background class(es) from %s", path, offset, spec.classifier)
    state = dict(state)
    state[weight_key] = state[weight_key][offset:]
    if bias_key in state:
        state[bias_key] = state[bias_key][offset:]
    return state


def _mismatch_message(path, spec, state, expected, missing, unexpected, mismatched) -> str:
    def first(items):
        more = f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
        return ", ".join(items[:_SHOWN]) + more

    arch = f"arch {spec.name} ({spec.reference} layout)" if spec else "the model"
    parts = [f"{path}: checkpoint does not fit {arch}"]
    if missing:
        parts.append(f"missing {len(missing)} keys: {first(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} keys: {first(unexpected)}")
    if mismatched:
        parts.append(f"{len(mismatched)} shape mismatches: {first(mismatched)}")
    hint = _hint(spec, state, expected, missing, unexpected)
    if hint:
        parts.append(f"hint: {hint}")
    return "; ".join(parts)


def _hint(spec, state, expected, missing, unexpected) -> str:
    if spec is None:
        return ""
    weight_key = f"{spec.classifier}.weight"
    if weight_key in state and weight_key in expected:
        have, want = state[weight_key].shape[0], expected[weight_key].shape[0]
        if have != want:
            return f"checkpoint has {have} classes: pass num_classes={have}"
    aux_prefixes = tuple(f"{m}." for m in spec.aux_modules)
    if aux_prefixes and missing and all(k.startswith(aux_prefixes) for k in missing):
        return "checkpoint has no auxiliary heads: build the model with aux_logits=False"
    if len(missing) == len(expected) and unexpected:
        return f"no key matches; is this a {spec.reference} checkpoint of another architecture?"
    return ""


def cache_dir() -> Path:
    """Where downloads go: $INCEPTION_DEPLOY_CACHE, else $XDG_CACHE_HOME/inception-deploy."""
    if os.environ.get("INCEPTION_DEPLOY_CACHE"):
        return Path(os.environ["INCEPTION_DEPLOY_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "inception-deploy"


def expected_digest(source: PretrainedWeights) -> str | None:
    """Full sha256 when published, else the prefix in a torch.hub-style name (``x-1378be20.pth``)."""
    if source.sha256:
        return source.sha256.lower()
    match = re.search(r"-([0-9a-f]{8,})\.[A-Za-z]+$", source.url.rsplit("/", 1)[-1])
    return match.group(1) if match else None


# The download cache holds files named after their URL, checked against their hash: a file there
# that fails the check is the toolkit's own broken download, fetched again.
DOWNLOAD = Kind("a download", lambda path: True)


def download(source: PretrainedWeights, *, directory: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Fetch ``source.url`` into the cache (once) and check its hash; return the local path.

    The file is streamed into a temporary file beside its final name and renamed only after
    the hash matched, so an interrupted or corrupt download never poses as a checkpoint.
    """
    directory = Path(directory) if directory is not None else cache_dir()
    dest = directory / source.url.rsplit("/", 1)[-1]
    expected = expected_digest(source)
    if dest.is_file():
        if expected is None or sha256_file(dest).startswith(expected):
            return dest
        log.warning("%s: cached file does not match its hash; downloading again", dest)
    with atomic_path(dest, DOWNLOAD) as tmp:
        with open(tmp, "wb") as out:
            digest = _fetch(source.url, out, progress)
        if expected is not None and not digest.startswith(expected):
            raise WeightsError(
                f"{source.url}: sha256 {digest[:16]}... does not match the published "
                f"{expected}; the download is corrupt or the file was replaced"
            )
        if expected is None:
            log.warning("%s: no published hash to check against; sha256 of the download is %s", source.url, digest)
    return dest


MAX_DOWNLOAD_BYTES = 4 << 30  # the largest published checkpoint is ~0.3 GB
DOWNLOAD_DEADLINE_S = 3600  # a whole checkpoint, at 100 kB/s or better


def _fetch(url: str, out, progress: bool) -> str:
    """Stream ``url`` into ``out``: 30 s for the connection and each read, at most
    MAX_DOWNLOAD_BYTES and DOWNLOAD_DEADLINE_S in all (a server that trickles bytes is given up on)."""
    sha, size, until = hashlib.sha256(), 0, time.monotonic() + DOWNLOAD_DEADLINE_S
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with bar(
                total=total, unit="B", unit_scale=True, disable=not progress, desc=url.rsplit("/", 1)[-1], leave=False
            ) as shown:
                while chunk := response.read1(1 << 20):  # whatever has arrived: the limits are checked often
                    size += len(chunk)
                    if size > MAX_DOWNLOAD_BYTES or time.monotonic() > until:
                        raise OSError(
                            f"larger than {MAX_DOWNLOAD_BYTES >> 30} GiB"
                            if size > MAX_DOWNLOAD_BYTES
                            else f"not complete within {DOWNLOAD_DEADLINE_S // 60} min"
                        )
                    sha.update(chunk)
                    out.write(chunk)
                    shown.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise WeightsError(
            f"could not download {url} ({reason}); download it on a connected machine "
            f"and pass the local file as {setting('weights')} instead"
        ) from None
    return sha.hexdigest()
