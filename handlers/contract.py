"""The serving contract: the one definition of every value that clients and servers share.

Model names, the hybrid's parts, the rating range, k limits, body limits, feedback kinds, the
Triton tensor names and the error types with their HTTP status. The TorchServe handlers, the web
app's validation, the Triton names, the Locust files and the dashboard generator all import
these. Standard library only, so it ships inside every ``.mar`` beside the handlers (imported
there as the top-level module ``contract``).
"""

from __future__ import annotations

# -- models ---------------------------------------------------------------------------------------
SAE = "sae"
RBM = "rbm"
HYBRID = "hybrid"
SCORING_MODELS = (SAE, RBM)  # the trained models
HYBRID_PARTS = SCORING_MODELS  # what the hybrid mixes, in its weights' order
SERVED_MODELS = (SAE, RBM, HYBRID)  # what a client may ask for

# -- ratings and answers --------------------------------------------------------------------------
MIN_RATING, MAX_RATING = 1.0, 5.0
LIKED_RATING = 4.0  # explanations come from the movies a user rated at least this high
DEFAULT_K = 10
MAX_K = 100
MAX_USERS = 50  # per TorchServe body ("users": [...]); a bigger batch belongs in an offline job
MAX_BODY_BYTES = 1 << 20
GRAPH_TOP_K = 50  # the top-k the Triton graphs compute (rated films masked out)
# What a visitor may say of a recommendation.
FEEDBACK_KINDS = ("up", "down", "watched")
# A click (the click-through rate's numerator, online and in the A/B test) is positive feedback
# on a shown recommendation (docs/decisions/0011-click-is-positive-feedback.md).
CLICK_KINDS = ("up", "watched")

# -- Triton tensors -------------------------------------------------------------------------------
RATINGS = "ratings"  # FP32 [batch, n_items]: raw 1-5 stars, 0 = unrated, item_ids order
WEIGHTS = "weights"  # FP32 [batch, 2]: [w_sae, w_rbm] per request
SCORES = "scores"  # the model's own scores (the SAE's predicted ratings)
RANKING = "ranking"  # what the served list is ranked by
TOP_IDS = "top_ids"  # INT64 [batch, GRAPH_TOP_K]: MovieLens ids, best first
TOP_SCORES = "top_scores"  # their ranking values
SAE_RANKING = "sae_ranking"  # hybrid_blend's inputs
RBM_RANKING = "rbm_ranking"
SAE_SCORES = "sae_scores"  # the hybrid ensemble's predicted ratings

# -- errors: code -> (HTTP status, when) ---------------------------------------------------------
ERRORS: dict[str, tuple[int, str]] = {
    "unsupported_media_type": (415, "Content-Type is not application/json"),
    "body_too_large": (413, f"body larger than {MAX_BODY_BYTES} bytes"),
    "invalid_json": (400, "body is not valid JSON (UTF-8)"),
    "invalid_body": (400, "body (or an entry of users) is not a JSON object, or users not a list"),
    "unknown_fields": (400, "fields the API does not know; the message names them"),
    "missing_field": (400, "neither ratings nor users given, or both"),
    "invalid_ratings": (400, "ratings is not an object of movie id -> rating"),
    "unknown_movie_ids": (422, "movie ids not in the model's catalogue"),
    "invalid_rating": (422, f"a rating is not a number from {MIN_RATING:g} to {MAX_RATING:g}"),
    "invalid_k": (422, f"k is not an integer from 1 to {MAX_K}"),
    "invalid_flag": (400, "exclude_rated or explain is not true/false"),
    "invalid_weights": (422, "weights is not an object of model -> non-negative number"),
    "too_many_users": (422, f"more than {MAX_USERS} users in one body"),
    "internal_error": (500, "the server failed on this request (others are unaffected)"),
}
