"""The one JSON document every artifact carries (ONNX metadata_props, engine sidecar).

Reading it needs neither torch nor onnx: ONNX Runtime exposes metadata_props as
``custom_metadata_map``, so the runtime gets preprocessing and labels from here.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import InceptionDeployError
from .preprocess import PreprocessConfig

METADATA_KEY = "inception_deploy"
SCHEMA_VERSION = 1


def parse_metadata(props: dict[str, str], source: str) -> dict:
    """The toolkit's metadata from an artifact's key/value props, validated."""
    if METADATA_KEY not in props:
        raise InceptionDeployError(
            f"{source}: no {METADATA_KEY!r} metadata (not exported by inception-export); "
            f"pass --arch to supply the preprocessing")
    try:
        meta = json.loads(props[METADATA_KEY])
        PreprocessConfig.from_dict(meta["preprocess"])
    except (ValueError, KeyError, TypeError) as e:
        raise InceptionDeployError(f"{source}: corrupt {METADATA_KEY!r} metadata ({e})") from None
    return meta


def preprocess_of(meta: dict) -> PreprocessConfig:
    return PreprocessConfig.from_dict(meta["preprocess"])


def sidecar_path(engine: str | Path) -> Path:
    """``model.plan`` -> ``model.plan.json``: the plan stays a plain plan that trtexec loads."""
    return Path(f"{engine}.json")


def read_sidecar(engine: str | Path) -> dict | None:
    """The engine's sidecar document, or None when there is none."""
    path = sidecar_path(engine)
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text("utf-8"))
        PreprocessConfig.from_dict(meta["preprocess"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise InceptionDeployError(f"{path}: corrupt engine sidecar ({e})") from None
    return meta


def onnx_metadata(proto) -> dict | None:
    """The toolkit's metadata of an onnx.ModelProto, or None."""
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            return json.loads(prop.value)
    return None


def set_onnx_metadata(proto, metadata: dict) -> None:
    """Merge our key into metadata_props (onnx.helper.set_model_props would drop the others)."""
    value = json.dumps(metadata, separators=(",", ":"))
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = value
            return
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, value
