"""Triton over gRPC: `locust -f locustfiles/grpc.py --host 127.0.0.1:8001` from the repo root.

Locust imports this file as the module "grpc", with this folder first on sys.path, so any
`import grpc` (tritonclient's, and grpcio's own lazy ones) would find this file instead of
grpcio. The name is handed back to grpcio for good and the folder set aside while the users
are imported; Locust keeps its own reference to this module.
"""

import sys
from pathlib import Path

_here = str(Path(__file__).resolve().parent)
_path = list(sys.path)
sys.modules.pop("grpc", None)
sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != _here]
try:
    from perf.locust_users import TritonGrpcUser
finally:
    sys.path[:] = _path


class GrpcUser(TritonGrpcUser):
    """One simulated client of the model."""
