"""Monitoring: metrics, drift, logs, Prometheus rules and Grafana dashboards."""
