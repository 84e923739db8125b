"""TorchServe handler of the Stacked AutoEncoder: scores are predicted ratings (1-5)."""

from __future__ import annotations

try:  # inside a .mar the extra files sit beside the handler, as top-level modules
    from recommender_handler import RecommenderHandler
except ImportError:  # in the repository
    from handlers.recommender_handler import RecommenderHandler


class SAEHandler(RecommenderHandler):
    name = "sae"
    parts = ("sae",)
