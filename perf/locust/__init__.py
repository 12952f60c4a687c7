"""Locust users that drive Triton over gRPC and HTTP, and the gateway over HTTP.

The locustfiles in ``locustfiles/`` are thin: they import one user from here. Every user
measures at one point (``TritonUser``) and reports through Locust's one request event, in
microseconds (see ``perf.locust.stats``). Nothing here connects or reads files at import.
"""
