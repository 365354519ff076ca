"""Triton Python model: encoded image bytes in, the classifier's exact input out.

The preprocessing is the package's own code (``inception_preprocess/``, copied beside this file
when the repository was written), configured by the ``preprocess`` parameter of config.pbtxt
(the artifact's PreprocessConfig as JSON). The server's Python needs numpy and Pillow only.
"""

import io
import json
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import triton_python_backend_utils as pb_utils
from inception_preprocess.preprocess import PreprocessConfig, describe_image_error, load_image, normalize


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = config["parameters"]
        self.config = PreprocessConfig.from_dict(json.loads(parameters["preprocess"]["string_value"]))
        self.dtype = np.dtype(parameters["dtype"]["string_value"])
        self.output_name = config["output"][0]["name"]
        # PIL releases the GIL while it decodes and resizes: the images of a batch decode in parallel
        self.pool = ThreadPoolExecutor(min(4, os.cpu_count() or 1), thread_name_prefix="decode")

    def execute(self, requests):
        responses = []
        for request in requests:
            encoded = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)
            try:
                images = list(self.pool.map(self._decode, range(len(encoded)), encoded))
            except ValueError as e:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e))))
                continue
            batch = normalize(np.stack(images), self.config).astype(self.dtype, copy=False)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.output_name, batch)]))
        return responses

    def _decode(self, index, data):
        """One image as H x W x 3 floats in [0, 1]; ValueError naming what is wrong with it."""
        try:
            return load_image(io.BytesIO(bytes(data)), self.config)
        except Exception as e:  # a corrupt upload is the client's error, never the server's
            raise ValueError(f"image {index}: {describe_image_error(e)}") from None

    def finalize(self):
        self.pool.shutdown()
