"""Triton Python model: logits in, probabilities out (the last step of ``<name>_pipeline``).

Computed by the package's own ``postprocess.softmax`` (copied beside this file as
``inception_postprocess/``), in float64 like the local Predictor, so a client of the pipeline
gets the probabilities ``inception-run`` prints; the output's label file lets Triton's
classification extension return the top k as "probability:index:label" for other clients.
"""

import triton_python_backend_utils as pb_utils
from inception_postprocess.postprocess import softmax


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            probabilities = softmax(pb_utils.get_input_tensor_by_name(request, "LOGITS").as_numpy())
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("PROBABILITIES", probabilities)]))
        return responses
