"""The gateway's /predict: `locust -f locustfiles/gateway.py --host http://127.0.0.1:8080`."""

from perf.locust.gateway_user import GatewayUser


class UploadUser(GatewayUser):
    """One simulated client uploading images."""
