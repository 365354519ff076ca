"""A Python-based Triton backend that runs a model with this package's own runtime.

``inception-serve`` installs it as the ``onnxruntime`` and ``openvino`` backends of a server that
has neither (the CPU build bundled with nvidia-pytriton): the ONNX file then runs on ONNX Runtime
(or OpenVINO) through ``inception_deploy.runtime``, which must be importable in the server's
Python. Production servers use Triton's own backends instead; the repository is the same.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from inception_deploy.runtime.open import open_backend


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        folder = Path(args["model_repository"]) / args["model_version"]
        model_file = folder / (config.get("default_model_filename") or "model.onnx")
        device = "openvino" if config.get("backend") == "openvino" else "cpu"
        self.backend = open_backend(model_file, device=device)
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        self.output_dtype = pb_utils.triton_string_to_numpy(config["output"][0]["data_type"])

    def execute(self, requests):
        batches = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        logits = self.backend.infer(np.concatenate(batches)).astype(self.output_dtype, copy=False)
        responses, start = [], 0
        for batch in batches:  # one inference for all requests of a dynamic batch, split back
            rows = logits[start : start + len(batch)]
            start += len(batch)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.output_name, rows)]))
        return responses
