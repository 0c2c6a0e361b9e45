"""The rate limiter's Prometheus counter.

Declared here rather than in :mod:`tollgate.ops.metrics` because security sits below ops in the import
layers (ops imports the client-IP resolution from here); the counter lands in the same registry and,
under ``PROMETHEUS_MULTIPROC_DIR``, the same files, so /metrics shows it as before.
"""

from __future__ import annotations

from prometheus_client import Counter

RATE_LIMITED = Counter(
    "tollgate_rate_limited_total", "Requests refused by a rate limit", ["policy"]
)
