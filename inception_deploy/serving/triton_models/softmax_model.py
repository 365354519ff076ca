"""Triton Python model: logits in, probabilities out (the last step of ``<name>_pipeline``).

Computed as the package's Predictor computes them (float64, max subtracted), so a client of the
pipeline gets the probabilities ``inception-run`` prints; the output's label file lets Triton's
classification extension return the top k as "probability:index:label".
"""
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, "LOGITS").as_numpy().astype(np.float64)
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            probabilities = (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("PROBABILITIES", probabilities)]))
        return responses
