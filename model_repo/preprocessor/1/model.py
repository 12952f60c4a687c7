"""Triton python-backend glue for the preprocessor: one response per request, so a row that
does not decode fails only its own request and the rest of the dynamic batch still succeeds."""

import json
import sys
from pathlib import Path

import cv2
import triton_python_backend_utils as pb_utils

sys.path.insert(0, str(Path(__file__).parent))
from preprocess import DecodeError, preprocess_rows


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        # OpenCV's own thread pool competes with the other instances and stubs for the cores.
        cv2.setNumThreads(int(params.get("opencv_num_threads", "1")))

    def execute(self, requests):
        responses = []
        for request in requests:
            rows = pb_utils.get_input_tensor_by_name(request, "RAW_IMAGE").as_numpy()
            try:
                images = preprocess_rows(rows)
            except DecodeError as error:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"preprocessor: {error}")))
                continue
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("PREPROCESSED_IMAGE", images)]))
        return responses
