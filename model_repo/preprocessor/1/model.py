"""Triton python-backend glue for the preprocessor. A dynamic batch is worked as one: every
request's images are decoded into one uint8 batch and normalized in one pass, and each
request gets its slice back. A row that does not decode fails only its own request."""

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, str(Path(__file__).parent))
from preprocess import SIZE, DecodeError, decode_into, normalize_into


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        # OpenCV's own thread pool competes with the other instances and stubs for the cores.
        cv2.setNumThreads(int(params.get("opencv_num_threads", "1")))

    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(r, "RAW_IMAGE").as_numpy() for r in requests]
        bounds = np.cumsum([0] + [len(rows) for rows in inputs])
        batch = np.empty((bounds[-1], SIZE, SIZE, 3), dtype=np.uint8)
        errors = {}
        for index, rows in enumerate(inputs):
            try:
                decode_into(rows, batch[bounds[index] : bounds[index + 1]])
            except DecodeError as error:
                errors[index] = error
        out = np.empty((bounds[-1], 3, SIZE, SIZE), dtype=np.float32)
        normalize_into(batch, out)
        responses = []
        for index in range(len(requests)):
            if index in errors:
                message = f"preprocessor: {errors[index]}"
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(message)))
            else:
                images = out[bounds[index] : bounds[index + 1]]
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("PREPROCESSED_IMAGE", images)]))
        return responses
