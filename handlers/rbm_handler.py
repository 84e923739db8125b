"""TorchServe handler of the RBM: scores are p(v = 1 | h), the chance the user rates a movie."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the checker reads the repository's modules (the fallback below)
    from handlers.recommender_handler import RecommenderHandler
else:
    try:  # inside a .mar the extra files sit beside the handler, as top-level modules
        from recommender_handler import RecommenderHandler
    except ImportError:  # in the repository
        from handlers.recommender_handler import RecommenderHandler


class RBMHandler(RecommenderHandler):
    name = "rbm"
    parts = ("rbm",)
