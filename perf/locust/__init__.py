"""Locust users that drive Triton over gRPC and HTTP, and the gateway over HTTP.

The locustfiles in ``locustfiles/`` are thin: they import one user from here. Every user
measures at one point (``TritonUser``) and reports through Locust's one request event, in
milliseconds with their decimals (see ``perf.locust.units``). Nothing here connects or reads
files at import.
"""

# Named here, where nothing imports Locust, so the sweep's driver reads perf's CSV without
# patching its own process for gevent: perf's own CSV beside Locust's (PREFIX_stats.csv ...),
# and the unit of every response time in both.
PERF_CSV_SUFFIX = "_perf.csv"
TIME_UNIT = "ms"
