"""Prometheus metrics at /metrics, named like Triton's (`nv_inference_*`) under the prefix `edgewasm_`.

Durations are cumulative microsecond counters as in Triton, so `rate(..._duration_us) / rate(..._count)` is a
mean; `edgewasm_inference_request_duration_seconds` is also a histogram, for quantiles.
"""

from __future__ import annotations

import bisect
import re
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

PREFIX = "edgewasm"
#: Distinct guest stage names kept per model, so a guest cannot grow the metrics without bound.
MAX_STAGES = 16
_STAGE = re.compile(r"^[A-Za-z0-9_]{1,32}$")
_MV = ("model", "version")
#: The request-time histogram's upper bounds, seconds (and +Inf).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    """One registry per server (never the process-global one, so servers and tests do not share counters)."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series beside every counter: Triton has none either
        r = self.registry = CollectorRegistry()

        def counter(name: str, doc: str, labels: tuple[str, ...] = _MV) -> Counter:
            return Counter(f"{PREFIX}_{name}", doc, labels, registry=r)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = _MV) -> Gauge:
            return Gauge(f"{PREFIX}_{name}", doc, labels, registry=r)

        self.success = counter("inference_request_success", "Successful inference requests")
        self.failure = counter(
            "inference_request_failure", "Failed inference requests, by error kind", (*_MV, "reason")
        )
        self.count = counter("inference_count", "Inferences performed (one per request: no batching)")
        self.exec_count = counter("inference_exec_count", "Guest calls made")
        self.request_us = counter("inference_request_duration_us", "Cumulative request time, arrival to answer (µs)")
        self.queue_us = counter("inference_queue_duration_us", "Cumulative time requests waited for an instance (µs)")
        self.input_us = counter(
            "inference_compute_input_duration_us", "Cumulative time mapping requests to the guest's map (µs)"
        )
        self.infer_us = counter("inference_compute_infer_duration_us", "Cumulative time inside guest calls (µs)")
        self.output_us = counter(
            "inference_compute_output_duration_us", "Cumulative time mapping responses to tensors (µs)"
        )
        self.stage_us = counter(
            "guest_stage_duration_us", "Cumulative time of the guest's own stages (its stages_ms) (µs)", (*_MV, "stage")
        )
        self.request_seconds = Histogram(
            f"{PREFIX}_inference_request_duration_seconds",
            "Request time, arrival to answer",
            _MV,
            registry=r,
            buckets=BUCKETS,
        )
        self.instances = gauge("instances", "Guest instances (worker threads) of a loaded model")
        self.instances_in_use = gauge("instances_in_use", "Instances inside a guest call now")
        self.pending = gauge("pending_requests", "Requests queued or running now")
        self.loads = counter("model_loads", "Times a model was loaded (compiled or taken from the cache, instantiated)")
        self.evictions = counter("model_evictions", "Times a model was unloaded to make room (LRU)")
        self.replacements = counter(
            "instance_replacements", "Instances discarded after a trap (the next call gets a new one)"
        )
        self.loaded = Gauge(f"{PREFIX}_models_loaded", "Models loaded now", registry=r)
        self._models: dict[tuple[str, str], ModelMetrics] = {}
        self.http = Counter(
            f"{PREFIX}_http_requests", "HTTP requests by route and status", ("route", "status"), registry=r
        )
        self._http: dict[tuple[str, int], int] = {}

    def answered(self, route: str, status: int) -> None:
        """One HTTP request answered (call on the event loop only; added to the series when /metrics is read)."""
        key = (route, status)
        self._http[key] = self._http.get(key, 0) + 1

    def model(self, name: str, version: str) -> ModelMetrics:
        """The per-request series of one model, looked up once (a `labels()` call costs microseconds)."""
        key = (name, version)
        found = self._models.get(key)
        if found is None:
            found = self._models[key] = ModelMetrics(self, name, version)
        return found

    def flush(self) -> None:
        """Add what the event loop summed since the last call to the series."""
        for m in self._models.values():
            m.flush()
        counts, self._http = self._http, {}
        for (route, status), n in counts.items():
            self.http.labels(route, str(status)).inc(n)

    def render(self) -> bytes:
        self.flush()
        return generate_latest(self.registry)


class ModelMetrics:
    """One model's labelled series, bound once."""

    def __init__(self, m: Metrics, name: str, version: str) -> None:
        labels = (name, version)
        self._m = m
        self._labels = labels
        self.success = m.success.labels(*labels)
        self.count = m.count.labels(*labels)
        self.exec_count = m.exec_count.labels(*labels)
        self.request_us = m.request_us.labels(*labels)
        self.request_seconds = m.request_seconds.labels(*labels)
        self.queue_us = m.queue_us.labels(*labels)
        self.input_us = m.input_us.labels(*labels)
        self.infer_us = m.infer_us.labels(*labels)
        self.output_us = m.output_us.labels(*labels)
        self.pending = m.pending.labels(*labels)
        self.instances_in_use = m.instances_in_use.labels(*labels)
        self.replacements = m.replacements.labels(*labels)
        self._stages: dict[str, Any] = {}
        # Successes are summed here on the event loop and added to the series when /metrics is read: one request
        # would otherwise pay for seven locked counter updates.
        self._ok = 0
        self._request_us = self._input_us = self._infer_us = self._output_us = 0.0
        self._seconds = 0.0
        self._in_bucket = [0] * (len(BUCKETS) + 1)  # the last: past every bound (+Inf)

    def succeeded(self, seconds: float, input_s: float, infer_s: float, output_s: float) -> None:
        """One request answered 200 after `seconds` (call on the event loop only)."""
        self._ok += 1
        self._request_us += seconds * 1e6
        self._input_us += input_s * 1e6
        self._infer_us += infer_s * 1e6
        self._output_us += output_s * 1e6
        self._seconds += seconds
        self._in_bucket[bisect.bisect_left(BUCKETS, seconds)] += 1  # as Histogram.observe: the first bound >= it

    def flush(self) -> None:
        """Add what `succeeded` summed to the series (on the event loop, before they are read)."""
        ok, self._ok = self._ok, 0
        if ok:
            self.success.inc(ok)
            self.count.inc(ok)
            self.exec_count.inc(ok)
        for series, attr in ((self.request_us, "_request_us"), (self.input_us, "_input_us"),
                             (self.infer_us, "_infer_us"), (self.output_us, "_output_us")):  # fmt: skip
            value = getattr(self, attr)
            if value:
                series.inc(value)
                setattr(self, attr, 0.0)
        if ok:
            _add_to_histogram(self.request_seconds, self._in_bucket, self._seconds)
            self._in_bucket = [0] * (len(BUCKETS) + 1)
            self._seconds = 0.0

    def stage(self, stage: str) -> Any | None:
        """The series of a stage the guest reported; None past `MAX_STAGES` names (a guest chooses them)."""
        child = self._stages.get(stage)
        if child is None:
            if len(self._stages) >= MAX_STAGES or not _STAGE.match(stage):
                return None
            child = self._stages[stage] = self._m.stage_us.labels(*self._labels, stage)
        return child

    def failure(self, kind: str) -> Any:
        return self._m.failure.labels(*self._labels, kind)


def _add_to_histogram(child: Any, in_bucket: list[int], total: float) -> None:
    """Add counted observations to a labelled Histogram: what `observe` does once per observation (its sum and
    the count of the first bucket whose bound holds it; the exposition makes them cumulative). prometheus-client
    has no public call for many observations at once; tests/test_serve_units.py checks the result against
    `observe`, so a change of these internals fails there."""
    buckets = child._buckets
    if len(buckets) != len(in_bucket):
        raise RuntimeError(f"prometheus-client's Histogram has {len(buckets)} buckets, {len(in_bucket)} expected")
    for series, n in zip(buckets, in_bucket, strict=True):
        if n:
            series.inc(n)
    child._sum.inc(total)
