"""Serves a TorchScript file beside this file on Triton's python backend, for servers without
the libtorch backend: the config's ``torchscript_file`` parameter (default model.pt; the tuned
profile's model_pixels.pt takes uint8 pixels). NVIDIA's container serves the same file with
`platform: "pytorch_libtorch"` (`perf model emit`).

``nice`` (default 0, up to 19) lowers the stub's CPU priority by that much. On cores the
pipeline shares, the preprocessor's one process is the bound, and every moment it waits for a
core behind this stub is throughput lost; the classifier has time to spare and catches up.
Raising one's own nice needs no privilege (lowering it would)."""

import contextlib
import json
import os
from pathlib import Path

import numpy as np
import torch
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        nice = params.get("nice", "0")
        if not nice.isdecimal() or int(nice) > 19:
            raise pb_utils.TritonModelException(f"nice {nice!r}: give a whole number from 0 to 19")
        for thread in os.listdir("/proc/self/task"):  # Linux keeps a nice value per thread
            with contextlib.suppress(ProcessLookupError):  # a thread that has just ended
                tid = int(thread)
                os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + int(nice))
        # Each instance is its own process: one intra-op thread each keeps instances from
        # fighting over the cores; raise it when there are fewer instances than cores.
        torch.set_num_threads(int(params.get("torch_num_threads", "1")))
        gpu = args["model_instance_kind"] == "GPU" and torch.cuda.is_available()
        self.device = torch.device(f"cuda:{args['model_instance_device_id']}" if gpu else "cpu")
        path = Path(__file__).parent / params.get("torchscript_file", "model.pt")
        if not path.is_file():
            raise pb_utils.TritonModelException(f"{path} not found: build it with `perf model build`")
        self.model = torch.jit.load(str(path), map_location=self.device).eval()

    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(r, "input__0").as_numpy() for r in requests]
        # from_numpy shares the stub's buffer: a lone request is handed to torch without a copy.
        batch = torch.from_numpy(inputs[0] if len(inputs) == 1 else np.concatenate(inputs))
        with torch.inference_mode():
            logits = self.model(batch.to(self.device)).cpu().numpy()
        responses, start = [], 0
        for chunk in inputs:
            part = logits[start : start + len(chunk)]
            start += len(chunk)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("output__0", part)]))
        return responses
