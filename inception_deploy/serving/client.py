"""Classify images on a Triton server through a ``<name>_pipeline`` ensemble we wrote.

The client sends encoded image bytes, one image per request, several requests in flight (the
server's dynamic batcher groups them), and asks Triton's classification extension for the top k:
the answers are the same ``Prediction`` objects a local ``Predictor`` returns.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator
from urllib.parse import urlsplit

import numpy as np

from ..errors import InceptionDeployError, first_line, setting
from ..inputs import InputError, describe_os_error
from ..runtime.predictor import Prediction, prediction
from .repository import IMAGE_INPUT, LABELS_PARAMETER, PROBABILITIES

PROTOCOLS = {"http": 8000, "grpc": 8001}


class ClientError(InceptionDeployError):
    """The server cannot be reached or does not serve a pipeline we can use."""


def parse_url(url: str) -> tuple[str, str]:
    """``http://host:8000``, ``grpc://host:8001`` or ``host[:port]`` (HTTP) -> (protocol, host:port)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in PROTOCOLS or not parts.hostname or parts.path not in ("", "/"):
        raise ClientError(f"{url}: not a Triton URL; give http://HOST:PORT or grpc://HOST:PORT")
    try:
        port = parts.port or PROTOCOLS[parts.scheme]
    except ValueError:
        raise ClientError(f"{url}: not a valid port") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return parts.scheme, f"{host}:{port}"


def _module(protocol: str):
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError:
        raise ClientError("talking to Triton needs tritonclient: pip install 'inception-deploy[triton]'") from None
    return module


class TritonClient:
    """``TritonClient("http://127.0.0.1:8000").predict(["a.jpg"], topk=5)``.

    ``model``: the pipeline to use (default: the only ``*_pipeline`` model the server has ready).
    ``concurrency``: requests in flight at once.
    """

    def __init__(self, url: str, model: str | None = None, *, concurrency: int = 8, timeout: float = 60.0):
        self.protocol, self.address = parse_url(url)
        self.module = _module(self.protocol)
        self.concurrency, self.timeout = max(1, concurrency), timeout
        self._local = threading.local()
        client = self._client()
        try:
            ready = client.is_server_ready()
        except Exception as e:  # connection refused, DNS, TLS...: tritonclient wraps them differently
            raise ClientError(f"{url}: cannot reach a Triton server ({first_line(e)})") from None
        if not ready:
            raise ClientError(f"{url}: the Triton server is not ready")
        try:
            self.model = model or self._only_pipeline(client, url)
        except ClientError:
            raise
        except Exception as e:  # an answer that is not the JSON Triton's API defines
            raise ClientError(f"{url}: cannot read the server's model index ({first_line(e)})") from None
        self.num_classes = self._check_pipeline(client, url)
        self.labels = self._labels(client, url)

    def _client(self):
        """One client per thread: tritonclient's clients are not shared across threads."""
        if not hasattr(self._local, "client"):
            kwargs = {"network_timeout": self.timeout} if self.protocol == "http" else {}
            self._local.client = self.module.InferenceServerClient(self.address, **kwargs)
        return self._local.client

    def _only_pipeline(self, client, url: str) -> str:
        index = client.get_model_repository_index(**({"as_json": True} if self.protocol == "grpc" else {}))
        models = index.get("models", []) if isinstance(index, dict) else index
        pipelines = sorted(m["name"] for m in models if m["name"].endswith("_pipeline") and m.get("state") == "READY")
        if len(pipelines) != 1:
            found = ", ".join(pipelines) or "none"
            raise ClientError(
                f"{url}: choose the pipeline to use with {setting('model')} (ready *_pipeline models: {found})"
            )
        return pipelines[0]

    def _check_pipeline(self, client, url: str) -> int:
        try:
            meta = client.get_model_metadata(self.model, **({"as_json": True} if self.protocol == "grpc" else {}))
        except Exception as e:
            raise ClientError(f"{url}: model {self.model!r} is not available ({first_line(e)})") from None
        try:
            inputs, outputs = meta.get("inputs", []), meta.get("outputs", [])
            names = ([i["name"] for i in inputs], [o["name"] for o in outputs])
            classes = int(outputs[0]["shape"][-1]) if outputs else 0
        except (AttributeError, KeyError, IndexError, TypeError, ValueError):
            raise ClientError(f"{url}: model {self.model!r}: the server's metadata is not Triton's") from None
        if names != ([IMAGE_INPUT], [PROBABILITIES]):
            raise ClientError(
                f"{url}: model {self.model!r} takes {names[0]} and gives {names[1]}; expected a "
                f"pipeline written by inception-triton ({IMAGE_INPUT} -> {PROBABILITIES})"
            )
        return classes

    def _labels(self, client, url: str) -> list[str] | None:
        """The class names the pipeline's config carries (repositories written since they do),
        so the client ranks the full probabilities as a local run does; None: an older
        repository, ranked by Triton's classification extension (values rounded to 6 digits)."""
        try:
            config = client.get_model_config(self.model, **({"as_json": True} if self.protocol == "grpc" else {}))
            config = config.get("config", config)
            text = config.get("parameters", {}).get(LABELS_PARAMETER, {}).get("string_value")
            labels = None if text is None else json.loads(text)
        except Exception as e:  # an answer that is not Triton's
            raise ClientError(f"{url}: cannot read model {self.model!r}'s config ({first_line(e)})") from None
        if labels is not None and (
            not isinstance(labels, list)
            or len(labels) != self.num_classes
            or not all(isinstance(label, str) for label in labels)
        ):
            raise ClientError(f"{url}: model {self.model!r}'s labels do not name its {self.num_classes} classes")
        return labels

    def predict(self, sources: Iterable, topk: int = 5) -> list[Prediction]:
        return list(self.iter_predict(sources, topk))

    def iter_predict(self, sources: Iterable, topk: int = 5) -> Iterator[Prediction]:
        """Predictions in the order of ``sources`` (paths, bytes, or InputErrors), lazily."""
        topk = max(1, min(topk, self.num_classes))
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="triton") as pool:
            in_flight: deque = deque()
            for index, source in enumerate(sources):
                in_flight.append(pool.submit(self.classify, source, topk, index))
                if len(in_flight) >= self.concurrency * 2:
                    yield in_flight.popleft().result()
            while in_flight:
                yield in_flight.popleft().result()

    def classify(self, source, topk: int = 5, index: int = 0) -> Prediction:
        """One image (a path, encoded bytes, or an InputError) in one request; errors come back in
        the Prediction. ``index`` names unnamed bytes in messages."""
        if isinstance(source, InputError):
            return Prediction(source.name, error=source.reason)
        name = f"<image {index}>" if isinstance(source, bytes) else str(source)
        try:
            data = source if isinstance(source, bytes) else open(source, "rb").read()
        except OSError as e:
            return Prediction(name, error=describe_os_error(e))
        image = self.module.InferInput(IMAGE_INPUT, [1, 1], "BYTES")
        image.set_data_from_numpy(np.array([[data]], dtype=np.object_))
        ranked_here = self.labels is not None
        wanted = self.module.InferRequestedOutput(PROBABILITIES, **({} if ranked_here else {"class_count": topk}))
        try:
            timeout = {"client_timeout": self.timeout} if self.protocol == "grpc" else {}  # HTTP: at connect
            result = self._client().infer(self.model, [image], outputs=[wanted], **timeout)
            answer = result.as_numpy(PROBABILITIES).reshape(-1)
            if ranked_here:
                return prediction(name, answer.astype(np.float64), self.labels, topk)
            return _prediction(name, answer)
        except self.module.InferenceServerException as e:
            return Prediction(name, error=_server_reason(e))
        except Exception as e:  # a truncated or malformed answer: this image's error, the others go on
            return Prediction(name, error=f"unreadable answer from the server ({first_line(e)})")


def _server_reason(e) -> str:
    """Triton's message without its framing: "[500] in ensemble 'x_pipeline', image 0: ..." -> "..."."""
    text = first_line(e.message() if hasattr(e, "message") and e.message() else e)
    return text.split(": ", 1)[1] if text.startswith("in ensemble") and ": " in text else text


def _prediction(name: str, entries) -> Prediction:
    """Triton's classification strings "probability:index:label" (labels may contain ':')."""
    prediction = Prediction(name)
    for entry in entries:
        value, index, label = (entry.decode() if isinstance(entry, bytes) else entry).split(":", 2)
        prediction.probabilities.append(float(value))
        prediction.indices.append(int(index))
        prediction.labels.append(label)
    return prediction
