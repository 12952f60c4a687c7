"""Locust users that drive Triton over gRPC and HTTP, and the gateway over HTTP.

The locustfiles in ``locustfiles/`` are thin: they import one user from here. Every user
measures at one point (``TritonUser``) and reports through Locust's one request event, in
microseconds (see ``perf.locust.stats``). Nothing here connects or reads files at import.
"""

# perf's own CSV beside Locust's (PREFIX_stats.csv ...): named here, where nothing imports
# Locust, so the sweep's driver reads it without patching its own process for gevent.
PERF_CSV_SUFFIX = "_perf.csv"
