"""TorchServe ensemble handler: SAE + RBM in one worker, mixed with per-request weights.

Both TorchScript models run on the same batch tensor; their rankings are min-max scaled per user
over the candidate movies before the weighted mix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the checker reads the repository's modules (the fallback below)
    from handlers import recommendation as rec
    from handlers.recommender_handler import RecommenderHandler
else:
    try:  # inside a .mar the extra files sit beside the handler, as top-level modules
        import recommendation as rec
        from recommender_handler import RecommenderHandler
    except ImportError:  # in the repository
        from handlers import recommendation as rec
        from handlers.recommender_handler import RecommenderHandler


class HybridHandler(RecommenderHandler):
    name = rec.HYBRID
    parts = rec.HYBRID_PARTS

    def weight_names(self) -> tuple[str, ...]:
        return self.parts
