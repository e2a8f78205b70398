"""Prometheus metrics of one backend process: requests, latency, queue depth, model version."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info


class BackendMetrics:
    def __init__(self, queue_depth: Callable[[], float], model_version: Callable[[], str | None],
                 generation_queue_depth: Callable[[], float] = lambda: 0.0) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("alvar_requests", "Requests served, by endpoint and status code.",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("alvar_request_seconds", "Request latency in seconds, by endpoint.",
                                 ["endpoint"], registry=self.registry,
                                 buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 100))
        self.tasks_scored = Counter("alvar_tasks_scored", "Tasks scored by /predict.", registry=self.registry)
        depth = Gauge("alvar_training_queue_depth", "Jobs waiting in the training queue.", registry=self.registry)
        depth.set_function(queue_depth)
        generation = Gauge("alvar_generation_queue_depth", "Jobs waiting in the generation queue.",
                           registry=self.registry)
        generation.set_function(generation_queue_depth)
        self._version = Info("alvar_model", "The model version being served.", registry=self.registry)
        self._model_version = model_version

    def refresh(self) -> None:
        self._version.info({"version": self._model_version() or ""})
