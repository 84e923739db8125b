"""Metric functions: rating accuracy, ranking quality, beyond-accuracy figures."""
