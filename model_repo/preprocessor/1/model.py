"""Triton python-backend glue for the preprocessor. A row that does not decode fails only its
own request; the rest of the dynamic batch still succeeds.

The config's ``preprocessing`` parameter picks the implementation: ``batched`` works a
dynamic batch as one (every request's images decoded into one uint8 batch, normalized in one
pass, each request given its slice); ``per_image`` is the seed deployment's loop, one image
at a time, kept for the baseline profile."""

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, str(Path(__file__).parent))
from preprocess import SIZE, DecodeError, decode_into, normalize_into, preprocess


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        # OpenCV's own thread pool competes with the other instances and stubs for the cores.
        cv2.setNumThreads(int(params.get("opencv_num_threads", "1")))
        mode = params.get("preprocessing", "batched")
        if mode not in ("batched", "per_image"):
            raise pb_utils.TritonModelException(f"preprocessing {mode!r}: choose batched or per_image")
        self.work = self.batched if mode == "batched" else self.per_image

    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(r, "RAW_IMAGE").as_numpy() for r in requests]
        bounds = np.cumsum([0] + [len(rows) for rows in inputs])
        out = np.empty((bounds[-1], 3, SIZE, SIZE), dtype=np.float32)
        errors = self.work(inputs, bounds, out)
        responses = []
        for index in range(len(requests)):
            if index in errors:
                message = f"preprocessor: {errors[index]}"
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(message)))
            else:
                images = out[bounds[index] : bounds[index + 1]]
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("PREPROCESSED_IMAGE", images)]))
        return responses

    @staticmethod
    def batched(inputs, bounds, out):
        batch = np.empty((bounds[-1], SIZE, SIZE, 3), dtype=np.uint8)
        errors = {}
        for index, rows in enumerate(inputs):
            try:
                decode_into(rows, batch[bounds[index] : bounds[index + 1]])
            except DecodeError as error:
                errors[index] = error
        normalize_into(batch, out)
        return errors

    @staticmethod
    def per_image(inputs, bounds, out):
        errors = {}
        for index, rows in enumerate(inputs):
            for offset, row in enumerate(rows):
                try:
                    out[bounds[index] + offset] = preprocess(row)
                except DecodeError as error:
                    errors[index] = DecodeError(f"row {offset}: {error}")
                    break
        return errors
