"""TorchServe ensemble handler: SAE + RBM in one worker, mixed with per-request weights.

Both TorchScript models run on the same batch tensor; their scores (ratings 1-5 vs
probabilities) are min-max scaled per user over the candidate movies before the weighted mix.
"""

from __future__ import annotations

try:  # inside a .mar the extra files sit beside the handler, as top-level modules
    import recommendation as rec
    from recommender_handler import Batch, RecommenderHandler
except ImportError:  # in the repository
    from handlers import recommendation as rec
    from handlers.recommender_handler import Batch, RecommenderHandler


class HybridHandler(RecommenderHandler):
    name = "hybrid"
    parts = ("sae", "rbm")

    def weight_names(self) -> tuple[str, ...]:
        return self.parts

    def rank(self, batch: Batch) -> list[dict]:
        mask = rec.candidate_mask(batch.users, self.catalogue.n_items, batch.inputs)
        mixed = rec.hybrid_scores(batch.scores, mask, [user.weights for user in batch.users])
        answers = []
        for row, user in enumerate(batch.users):
            columns = rec.top_k(mixed[row], mask[row], user.k)
            reasons = rec.because(self.vectors, columns, user) if user.explain else None
            answer = rec.model_answer(
                self.catalogue, user, columns, mixed[row], batch.scores["sae"][row], reasons
            )
            answers.append({**answer, "weights": user.weights})
        return answers
