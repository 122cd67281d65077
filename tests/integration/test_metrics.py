"""Metrics go out through Ray's exporter: the request latency histogram has samples."""

import re
import time
import urllib.request

import ray


def scrape() -> str:
    port = next(n["MetricsExportPort"] for n in ray.nodes() if n["Alive"])
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def samples(body: str, metric: str, **labels: str) -> float:
    total = 0.0
    for line in body.splitlines():
        if line.startswith(metric) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_the_latency_histogram_and_counters_are_exported_with_samples(store, key):
    t = store.table()
    for i in range(20):
        t.put(f"{key}-{i}", i)
        t.get(f"{key}-{i}")
    t.put(key, "a")
    t.put(key, "b")  # a blind write: siblings
    assert len(t.get(key).values) == 2
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # Ray exports on an interval
        body = scrape()
        gets = samples(body, "ray_dynamo_request_latency_ms_count", op="get", table="default")
        siblings = samples(body, "ray_dynamo_siblings_returned_total", table="default")
        if gets >= 20 and siblings >= 1:
            break
        time.sleep(2)
    assert gets >= 20, re.findall(r"ray_dynamo\w+", body)[:20]
    assert samples(body, "ray_dynamo_request_latency_ms_bucket", op="put", le="+Inf") >= 20
    assert samples(body, "ray_dynamo_requests_total", outcome="ok") >= 40
    assert siblings >= 1
