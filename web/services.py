"""The app's shared objects (settings, database engine, catalogue, model backend, cache,
recommender, rate limiter), kept on the Flask app in the extension pattern.

``create_app`` builds them and calls ``init_app``; views, commands and tests read them back with
``services()`` (the current app's) or ``services(app)``. Views import this module, never
``web.app``: the factory imports the views, not the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app
from flask_limiter import Limiter
from sqlalchemy import Engine

from web.backends import ModelBackend
from web.cache import RecommendationCache
from web.catalog import Catalog
from web.config import WebSettings
from web.recommending import Recommender

EXTENSION_KEY = "movierec"


@dataclass
class Services:
    settings: WebSettings
    engine: Engine
    catalog: Catalog
    backend: ModelBackend
    cache: RecommendationCache
    recommender: Recommender
    limiter: Limiter


def init_app(app: Flask, services: Services) -> Services:
    """Keep ``services`` on ``app`` (``app.extensions["movierec"]``)."""
    app.extensions[EXTENSION_KEY] = services
    return services


def services(app: Flask | None = None) -> Services:
    """The services of ``app``, by default of the app handling the current request or command."""
    return (app if app is not None else current_app).extensions[EXTENSION_KEY]
