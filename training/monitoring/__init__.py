"""Monitoring: Prometheus metrics (web app and training), drift detection and the one logging
configuration shared by training, the web app and the model-server handlers."""
