"""Metrics, exported through Ray's own pipeline (`ray.util.metrics` -> each node's metrics agent,
scraped by Prometheus at the port Ray reports as ``MetricsExportPort``; Ray prefixes the names
with ``ray_``).

Role: one place that defines every metric the store emits, created lazily per process (a
router in a coordinator actor or in a client process, a handoff or anti-entropy task), so that
recording one is a dictionary lookup and a call.

    dynamo_request_latency_ms      histogram  op, table, routing   a get_many/put_many, end to end
    dynamo_requests_total          counter    op, table, outcome   ok | unavailable | overloaded
    dynamo_hints_stored_total      counter    table                keys written to a fallback
    dynamo_hints_delivered_total   counter                         keys handed off to their owner
    dynamo_read_repairs_total      counter    table                keys sent to stale replicas
    dynamo_antientropy_repairs_total counter                       keys moved by anti-entropy
    dynamo_siblings_returned_total counter    table                reads that returned siblings
    dynamo_evictions_total         counter    table                keys a cache table's LRU dropped

Must not: fail a request because a metric could not be recorded.
"""

from __future__ import annotations

from typing import Any, Optional

LATENCY_BOUNDARIES_MS = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
_DEFINITIONS = {
    "dynamo_request_latency_ms": ("histogram", "Latency of a get_many or put_many (ms)",
                                  ("op", "table", "routing")),
    "dynamo_requests_total": ("counter", "Requests by outcome", ("op", "table", "outcome")),
    "dynamo_hints_stored_total": ("counter", "Keys written to a fallback under a hint", ("table",)),
    "dynamo_hints_delivered_total": ("counter", "Hinted keys handed off to their owner", ()),
    "dynamo_read_repairs_total": ("counter", "Keys sent to stale replicas after a read", ("table",)),
    "dynamo_antientropy_repairs_total": ("counter", "Keys moved by anti-entropy exchanges", ()),
    "dynamo_siblings_returned_total": ("counter", "Reads that returned several siblings",
                                       ("table",)),
    "dynamo_evictions_total": ("counter", "Keys a cache table's vnode dropped to stay within "
                               "max_memory_mb", ("table",)),
}
_metrics: dict[str, Any] = {}


def _metric(name: str) -> Optional[Any]:
    metric = _metrics.get(name)
    if metric is None:
        try:
            from ray.util import metrics

            kind, description, tags = _DEFINITIONS[name]
            if kind == "histogram":
                metric = metrics.Histogram(name, description=description,
                                           boundaries=LATENCY_BOUNDARIES_MS, tag_keys=tags)
            else:
                metric = metrics.Counter(name, description=description, tag_keys=tags)
        except Exception:  # Ray not initialised here, or metrics disabled: record nothing
            return None
        _metrics[name] = metric
    return metric


def observe(name: str, value: float, **tags: str) -> None:
    metric = _metric(name)
    if metric is not None:
        try:
            metric.observe(value, tags=tags or None)
        except Exception:
            pass


def count(name: str, value: float = 1, **tags: str) -> None:
    if value <= 0:
        return
    metric = _metric(name)
    if metric is not None:
        try:
            metric.inc(value, tags=tags or None)
        except Exception:
            pass


class RayMetrics:
    """The seam's `Metrics`, recorded through Ray's pipeline."""

    def count(self, name: str, value: float = 1, **tags: str) -> None:
        count(name, value, **tags)

    def observe(self, name: str, value: float, **tags: str) -> None:
        observe(name, value, **tags)
