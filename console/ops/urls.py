"""Mounted at the site root by console.urls: liveness, readiness and the Prometheus metrics."""

from __future__ import annotations

from django.urls import path

from console.ops import health, metrics

urlpatterns = [
    path("health", health.health, name="health"),
    path("health/ready", health.health_ready, name="health-ready"),
    path("metrics", metrics.metrics, name="metrics"),
]
