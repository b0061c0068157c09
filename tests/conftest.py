from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Two cores shared by the whole suite: generation speed varies with load, so time-based
# health checks and per-example deadlines would only make the suite flaky.
settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
settings.load_profile("default")

# Spans are asserted through an in-memory exporter where a test needs them; printing every
# span of the suite to the console would only bury its output.
os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
