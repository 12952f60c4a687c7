"""Triton python-backend glue for the preprocessor. A row that does not decode fails only its
own request; the rest of the dynamic batch still succeeds.

The config's ``preprocessing`` parameter picks the implementation: ``batched`` works a
dynamic batch as one (every request's images decoded into one uint8 batch, normalized in one
pass, each request given its slice); ``per_image`` is the seed deployment's loop, one image
at a time, kept for the baseline profile.

The output's data type in the config picks the hand-off to the classifier: TYPE_FP32 [3, 224,
224] is normalized RGB, as the deployment guide has it; TYPE_UINT8 [224, 224, 3] is the resized
RGB pixels, a quarter of the bytes, which the tuned profile's classifier scales and normalizes
inside its graph (batched only).

``decode_threads`` (default 1) decodes a batch's images on that many threads of the one
instance (batched only). Decoding is the pipeline's longest step, and an instance is one
process: while it decodes alone, the other core would wait on it."""

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, str(Path(__file__).parent))
from preprocess import SIZE, DecodeError, decode_row_into, normalize_into, preprocess


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        # OpenCV's own thread pool competes with the other instances and stubs for the cores.
        cv2.setNumThreads(int(params.get("opencv_num_threads", "1")))
        mode = params.get("preprocessing", "batched")
        if mode not in ("batched", "per_image"):
            raise pb_utils.TritonModelException(f"preprocessing {mode!r}: choose batched or per_image")
        output = next(o for o in config["output"] if o["name"] == "PREPROCESSED_IMAGE")
        hand_off = {"TYPE_FP32": ([3, SIZE, SIZE], np.float32), "TYPE_UINT8": ([SIZE, SIZE, 3], np.uint8)}
        if output["data_type"] not in hand_off or [int(d) for d in output["dims"]] != hand_off[output["data_type"]][0]:
            choices = " or ".join(f"{kind} {dims}" for kind, (dims, _) in hand_off.items())
            raise pb_utils.TritonModelException(
                f"PREPROCESSED_IMAGE is {output['data_type']} {output['dims']}: choose {choices}"
            )
        if output["data_type"] == "TYPE_UINT8" and mode != "batched":
            raise pb_utils.TritonModelException("a TYPE_UINT8 PREPROCESSED_IMAGE needs preprocessing: batched")
        threads = params.get("decode_threads", "1")
        if not threads.isdecimal() or int(threads) < 1:
            raise pb_utils.TritonModelException(f"decode_threads {threads!r}: give a whole number, 1 or more")
        if int(threads) > 1 and mode != "batched":
            raise pb_utils.TritonModelException(f"decode_threads {threads} needs preprocessing: batched")
        self.threads = int(threads)
        self.pool = ThreadPoolExecutor(self.threads, "decode") if self.threads > 1 else None
        dims, self.dtype = hand_off[output["data_type"]]
        self.shape = tuple(dims)
        self.work = self.per_image if mode == "per_image" else self.pixels if self.dtype == np.uint8 else self.batched

    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(r, "RAW_IMAGE").as_numpy() for r in requests]
        bounds = np.cumsum([0] + [len(rows) for rows in inputs])
        out = np.empty((bounds[-1], *self.shape), dtype=self.dtype)
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

    def finalize(self):
        if self.pool is not None:
            self.pool.shutdown()

    def batched(self, inputs, bounds, out):
        batch = np.empty((bounds[-1], SIZE, SIZE, 3), dtype=np.uint8)
        errors = self.decoded(inputs, bounds, batch)
        normalize_into(batch, out)
        return errors

    def decoded(self, inputs, bounds, out, rgb=False):
        """Every request's rows decoded into ``out``; {request index: its first bad row}. On
        threads, the batch's rows are cut into one contiguous run a thread."""
        rows = [(index, offset) for index, request in enumerate(inputs) for offset in range(len(request))]

        def decode_run(run):
            errors = {}
            for index, offset in run:
                if index in errors:
                    continue  # the request fails already
                try:
                    decode_row_into(inputs[index][offset], out[bounds[index] + offset], rgb)
                except DecodeError as error:
                    errors[index] = DecodeError(f"row {offset}: {error}")
            return errors

        if self.pool is None or len(rows) < 2:
            return decode_run(rows)
        size = -(-len(rows) // self.threads)
        errors = {}
        for found in self.pool.map(decode_run, [rows[i : i + size] for i in range(0, len(rows), size)]):
            for index, error in found.items():
                errors.setdefault(index, error)  # runs come back in order: the first bad row wins
        return errors

    def pixels(self, inputs, bounds, out):
        return self.decoded(inputs, bounds, out, rgb=True)

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
