"""Monitoring on the training side: the training figures' Prometheus textfile, GPU metrics,
drift detection (reference, request log, report) and the one logging configuration shared by
training, the web app and the model-server handlers. The web app's own Prometheus metrics
live in ``web/metrics.py``."""
