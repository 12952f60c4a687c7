"""A torch layer in the stub: Y = relu(X W + b), one batch at a time."""

import numpy as np
import torch
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        torch.set_num_threads(1)
        torch.manual_seed(0)
        self.layer = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 16)).eval()

    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(r, "X").as_numpy() for r in requests]
        sizes = [len(x) for x in inputs]
        with torch.inference_mode():
            out = self.layer(torch.from_numpy(np.concatenate(inputs))).numpy()
        responses, start = [], 0
        for size in sizes:
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", out[start : start + size])]))
            start += size
        return responses
