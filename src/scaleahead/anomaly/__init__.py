"""Anomaly detection (causal detector, NAB scoring) and alerting (lifecycle, Alertmanager)."""
