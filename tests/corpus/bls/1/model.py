"""BLS: forwards INPUT0 and INPUT1 to the model MODEL_NAME names and returns its outputs."""

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            name = pb_utils.get_input_tensor_by_name(request, "MODEL_NAME").as_numpy()[0].decode()
            inputs = [pb_utils.get_input_tensor_by_name(request, n) for n in ("INPUT0", "INPUT1")]
            called = pb_utils.InferenceRequest(
                model_name=name, requested_output_names=["OUTPUT0", "OUTPUT1"], inputs=inputs
            ).exec()
            if called.has_error():
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(called.error().message())))
                continue
            out = [pb_utils.get_output_tensor_by_name(called, n) for n in ("OUTPUT0", "OUTPUT1")]
            responses.append(pb_utils.InferenceResponse(output_tensors=out))
        return responses
