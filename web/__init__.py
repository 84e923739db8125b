"""The htmx + Flask web app (``flask --app web run`` finds ``create_app``)."""

from web.app import create_app

__all__ = ["create_app"]
