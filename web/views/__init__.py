"""Blueprints: pages (search, profile, ratings), recommendations, analytics, the JSON API."""
