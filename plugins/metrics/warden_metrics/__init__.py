"""Prometheus metrics for a Warden server, served as /metrics on the health-check port."""
