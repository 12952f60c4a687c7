"""Triton over gRPC: `locust -f locustfiles/grpc.py --host 127.0.0.1:8001` from the repo root.

Locust imports this file as the module "grpc", hiding grpcio from every later `import grpc`
(tritonclient's, grpcio's own lazy ones): the name is handed back before the user is imported.
"""

from perf.locust.names import give_name_back

give_name_back(__file__)

from perf.locust.grpc_user import TritonGrpcUser  # noqa: E402


class GrpcUser(TritonGrpcUser):
    """One simulated client of the model."""
