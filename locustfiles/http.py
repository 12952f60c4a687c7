"""Triton over HTTP: `locust -f locustfiles/http.py --host 127.0.0.1:8000` from the repo root.

Locust imports this file as the module "http", hiding the standard library's http package:
the name is handed back before the user is imported.
"""

from perf.locust.names import give_name_back

give_name_back(__file__)

from perf.locust.http_user import TritonHttpUser  # noqa: E402


class HttpUser(TritonHttpUser):
    """One simulated client of the model."""
