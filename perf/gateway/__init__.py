"""The reference deployment's FastAPI gateway: image uploads in, the ensemble's predictions out.

``perf gateway`` serves it; ``uvicorn perf.gateway.app:app`` does too, with its settings read
from ``PERF_GATEWAY_*`` environment variables (``settings.py``).
"""
