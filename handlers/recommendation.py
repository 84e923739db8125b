"""The serving logic every recommendation handler shares, free of TorchServe so it unit-tests alone.

Request parsing and validation (each failure is a ``RequestError`` with a stable code and HTTP
status, see ``ERRORS``), movie id <-> column mapping, top-k with ``exclude_rated``, "because you
rated X" explanations from item-item cosine similarity of the item vectors the serving artifact
carries (``serving_artifact``), the one top-k, the hybrid's mix, the popularity
fallback for users with no ratings, score normalisation for the hybrid, and response building.

Inside a ``.mar`` this file ships as an extra file and is imported as a top-level module, so it
depends on nothing but the standard library and torch (orjson when present).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # the checker reads the repository's modules (the fallback below)
    from handlers import contract
else:
    try:  # inside a .mar the contract sits beside this file, as a top-level module
        import contract
    except ImportError:  # in the repository
        from handlers import contract

try:  # 3-5x faster JSON; the worker falls back to the standard library without it
    import orjson

    HAVE_ORJSON = True
except ImportError:  # pragma: no cover - orjson is pinned in the project
    HAVE_ORJSON = False

MAX_BECAUSE = 3  # movies named per explanation
MAX_LISTED = 10  # offending ids/values quoted in one error message
JSON_CONTENT_TYPE = "application/json"

# The contract's values this module's callers use by these names.
SAE, RBM, HYBRID, HYBRID_PARTS = contract.SAE, contract.RBM, contract.HYBRID, contract.HYBRID_PARTS
MIN_RATING, MAX_RATING, LIKED_RATING = (
    contract.MIN_RATING,
    contract.MAX_RATING,
    contract.LIKED_RATING,
)
DEFAULT_K, MAX_K, MAX_USERS = contract.DEFAULT_K, contract.MAX_K, contract.MAX_USERS
MAX_BODY_BYTES, ERRORS = contract.MAX_BODY_BYTES, contract.ERRORS

STRATEGY_MODEL = "model"
STRATEGY_POPULARITY = "popularity"

_USER_FIELDS = frozenset({"ratings", "k", "exclude_rated", "explain"})
_BATCH_FIELDS = frozenset({"users", "k", "exclude_rated", "explain"})
_WEIGHTS_FIELD = "weights"


class RequestError(ValueError):
    """One request is invalid; ``code`` is a key of ``ERRORS``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = ERRORS[code][0]
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        # Same shape as TorchServe's own errors ({"code", "type", "message"}).
        return {"code": self.status, "type": self.code, "message": self.message}


# -- the catalogue a model serves ---------------------------------------------------------------
@dataclass(frozen=True)
class Catalogue:
    """Movies in model column order, with their train-set popularity."""

    item_ids: list[int]
    movies: dict[int, dict[str, Any]]  # movie id -> {title, year, genres}
    popularity: torch.Tensor  # float32 [n_items]: train ratings per movie
    column_of: dict[int, int] = field(init=False)
    column_of_key: dict[str, int] = field(init=False)  # JSON keys: "50" -> column of movie 50
    described: list[dict[str, Any]] = field(init=False)  # describe() of each column's movie

    def __post_init__(self) -> None:
        # Built once: every request looks its ratings up here and describes its answers.
        object.__setattr__(self, "column_of", {mid: c for c, mid in enumerate(self.item_ids)})
        by_key = {str(movie): column for movie, column in self.column_of.items()}
        object.__setattr__(self, "column_of_key", by_key)
        object.__setattr__(self, "described", [self.describe(mid) for mid in self.item_ids])
        if self.popularity.shape != (len(self.item_ids),):
            raise ValueError(
                f"popularity has {tuple(self.popularity.shape)} entries, "
                f"expected {len(self.item_ids)} (one per item id)"
            )

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @classmethod
    def from_artifact(cls, artifact: Any) -> Catalogue:
        """The catalogue a serving artifact carries (``serving_artifact.ServingArtifact``)."""
        return cls(
            item_ids=[int(i) for i in artifact.item_ids],
            movies={int(m["movie_id"]): m for m in artifact.movies},
            popularity=artifact.popularity.to(torch.float32),
        )

    def describe(self, movie_id: int) -> dict[str, Any]:
        movie = self.movies.get(movie_id, {})
        return {
            "movie_id": movie_id,
            "title": movie.get("title"),
            "year": movie.get("year"),
            "genres": movie.get("genres", []),
        }


# -- requests ------------------------------------------------------------------------------------
@dataclass
class UserQuery:
    """One user's question: their ratings by column, and how to answer."""

    ratings: dict[int, float]
    k: int = DEFAULT_K
    exclude_rated: bool = True
    explain: bool = True
    weights: dict[str, float] | None = None


@dataclass
class ParsedRequest:
    users: list[UserQuery]
    is_batch: bool  # the body used "users": [...], so the answer is a list too


def decode_body(body: Any, content_type: str | None, max_bytes: int = MAX_BODY_BYTES) -> Any:
    """Raw request body -> JSON value. ``content_type`` None means the transport has none (gRPC).

    TorchServe hands over bytes (or an already decoded value when its own JSON decoding is on).
    """
    if content_type and content_type.split(";")[0].strip().lower() != JSON_CONTENT_TYPE:
        raise RequestError(
            "unsupported_media_type",
            f"Content-Type {content_type!r} is not supported; send {JSON_CONTENT_TYPE}",
        )
    if isinstance(body, dict | list):
        body = _dumps(body)  # already decoded upstream: size it as it came
    elif isinstance(body, str):
        body = body.encode("utf-8")
    if body is None:
        body = b""
    if len(body) > max_bytes:
        raise RequestError(
            "body_too_large", f"body is {len(body)} bytes; the limit is {max_bytes} bytes"
        )
    try:
        return orjson.loads(body) if HAVE_ORJSON else json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError("invalid_json", f"body is not valid JSON: {exc}") from None


def parse_request(
    payload: Any,
    catalogue: Catalogue,
    model_names: tuple[str, ...] = (),
    max_users: int = MAX_USERS,
) -> ParsedRequest:
    """Validate a decoded body. ``model_names`` (the hybrid's parts) enables ``weights``."""
    if not isinstance(payload, dict):
        raise RequestError("invalid_body", f"body must be a JSON object, not {_kind(payload)}")
    extra = {_WEIGHTS_FIELD} if model_names else set()
    if "users" in payload:
        if "ratings" in payload:
            raise RequestError("missing_field", "give either ratings or users, not both")
        _check_fields(payload, _BATCH_FIELDS | extra, "body")
        users = payload["users"]
        if not isinstance(users, list):
            raise RequestError("invalid_body", f"users must be a list, not {_kind(users)}")
        if len(users) > max_users:
            raise RequestError(
                "too_many_users", f"{len(users)} users in one body; the limit is {max_users}"
            )
        defaults = {key: payload[key] for key in payload if key != "users"}
        queries = []
        for index, user in enumerate(users):
            if not isinstance(user, dict):
                raise RequestError(
                    "invalid_body", f"users[{index}] must be a JSON object, not {_kind(user)}"
                )
            _check_fields(user, _USER_FIELDS | extra, f"users[{index}]")
            queries.append(_parse_user({**defaults, **user}, catalogue, model_names))
        return ParsedRequest(queries, is_batch=True)
    _check_fields(payload, _USER_FIELDS | extra, "body")
    return ParsedRequest([_parse_user(payload, catalogue, model_names)], is_batch=False)


def _check_fields(obj: dict, allowed: frozenset[str] | set[str], where: str) -> None:
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        known = ", ".join(sorted(allowed))
        raise RequestError(
            "unknown_fields", f"unknown field(s) in {where}: {', '.join(unknown)}; allowed: {known}"
        )


def _parse_user(obj: dict, catalogue: Catalogue, model_names: tuple[str, ...]) -> UserQuery:
    if "ratings" not in obj:
        raise RequestError("missing_field", "ratings is required (use {} for a new user)")
    return UserQuery(
        ratings=parse_ratings(obj["ratings"], catalogue),
        k=parse_k(obj.get("k", DEFAULT_K)),
        exclude_rated=_parse_flag(obj, "exclude_rated", True),
        explain=_parse_flag(obj, "explain", True),
        weights=parse_weights(obj.get(_WEIGHTS_FIELD), model_names) if model_names else None,
    )


def parse_ratings(ratings: Any, catalogue: Catalogue) -> dict[int, float]:
    """{"<movie id>": 1-5} -> {column: rating}; every bad id or value is reported at once."""
    if not isinstance(ratings, dict):
        raise RequestError(
            "invalid_ratings",
            f"ratings must be an object of movie id -> rating, not {_kind(ratings)}",
        )
    unknown, invalid, by_column = [], [], {}
    column_of_key = catalogue.column_of_key
    for key, value in ratings.items():
        column = column_of_key.get(key)
        if column is None:  # not the canonical spelling ("050", " 50"), or not a movie
            movie_id = _as_movie_id(key)
            column = None if movie_id is None else catalogue.column_of.get(movie_id)
        if column is None:
            unknown.append(key)
        # An exact type test keeps bools out; NaN and infinities fail the range test.
        elif type(value) not in (int, float) or not MIN_RATING <= value <= MAX_RATING:
            invalid.append(f"{key}={json.dumps(value)}")
        else:
            by_column[column] = float(value)
    if unknown:
        raise RequestError(
            "unknown_movie_ids",
            f"{len(unknown)} movie id(s) not in the catalogue: {_listing(unknown)}",
        )
    if invalid:
        raise RequestError(
            "invalid_rating",
            f"ratings must be numbers from {MIN_RATING:g} to {MAX_RATING:g}: {_listing(invalid)}",
        )
    return by_column


def parse_k(k: Any, max_k: int = MAX_K) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max_k:
        raise RequestError("invalid_k", f"k must be an integer from 1 to {max_k}, got {k!r}")
    return k


def parse_weights(weights: Any, model_names: tuple[str, ...]) -> dict[str, float]:
    """{"sae": 0.5, "rbm": 0.5} -> weights summing to 1 (absent models weigh 0; None = equal)."""
    if weights is None:
        return {name: 1.0 / len(model_names) for name in model_names}
    if not isinstance(weights, dict):
        raise RequestError("invalid_weights", f"weights must be an object, not {_kind(weights)}")
    unknown = sorted(set(weights) - set(model_names))
    if unknown:
        raise RequestError(
            "invalid_weights",
            f"unknown model(s) in weights: {', '.join(unknown)}; known: {', '.join(model_names)}",
        )
    bad = [name for name, value in weights.items() if not _is_number(value) or value < 0]
    if bad:
        raise RequestError(
            "invalid_weights", f"weights must be non-negative numbers: {', '.join(sorted(bad))}"
        )
    total = float(sum(weights.values()))
    if total <= 0:
        raise RequestError("invalid_weights", "at least one weight must be positive")
    return {name: float(weights.get(name, 0.0)) / total for name in model_names}


def _parse_flag(obj: dict, name: str, default: bool) -> bool:
    value = obj.get(name, default)
    if not isinstance(value, bool):
        raise RequestError("invalid_flag", f"{name} must be true or false, got {value!r}")
    return value


def _as_movie_id(key: str) -> int | None:
    try:
        return int(key)
    except (TypeError, ValueError):
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number" if _is_number(value) else type(value).__name__)


def _listing(items: list[str]) -> str:
    shown = ", ".join(str(item) for item in items[:MAX_LISTED])
    return shown + (f" (and {len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else "")


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value) if HAVE_ORJSON else json.dumps(value).encode("utf-8")


# -- model side ---------------------------------------------------------------------------------
def ratings_matrix(users: list[UserQuery], n_items: int) -> torch.Tensor:
    """The model input: float32 [len(users), n_items], 0 = unrated."""
    matrix = torch.zeros(len(users), n_items, dtype=torch.float32)
    for row, user in enumerate(users):
        if user.ratings:
            columns = torch.tensor(list(user.ratings), dtype=torch.long)
            values = torch.tensor(list(user.ratings.values()), dtype=torch.float32)
            matrix[row].index_put_((columns,), values)
    return matrix


def candidate_mask(
    users: list[UserQuery], n_items: int, ratings: torch.Tensor | None = None
) -> torch.Tensor:
    """True where a movie may be recommended (rated ones are out when exclude_rated).

    ``ratings`` is ``ratings_matrix(users, n_items)`` when the caller already has it.
    """
    if ratings is None:
        ratings = ratings_matrix(users, n_items)
    exclude = torch.tensor([user.exclude_rated for user in users], dtype=torch.bool)
    return ~((ratings > 0) & exclude.unsqueeze(1))


def top_k_columns(scores: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """Columns [users, k] of each row's k best candidates, best first; ties go to the lower
    column (as ONNX's TopK, which the Triton graphs use). The one top-k of the project: the
    handlers, the web backends and the evaluator all rank with it.

    Rows with fewer than k candidates end with non-candidates; ``top_k`` drops them.
    """
    k = min(k, scores.shape[-1])
    if k > 0:
        # One past k: when no two of these scores tie and all are candidates' (masked columns
        # are -inf), topk's order is already the stable one (a served row: 21 us, not 74).
        masked = scores.masked_fill(~mask, -math.inf)
        values, columns = masked.topk(min(k + 1, scores.shape[-1]), dim=-1)
        distinct = bool((values[..., 1:] < values[..., :-1]).all())
        if distinct and bool((values[..., k - 1] > -math.inf).all()):
            return columns[..., :k]
    # Stable sorts keep equal scores in column order: by score first, then candidates before
    # the rest (so a candidate scored -inf still comes before any masked column).
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    excluded = (~mask).gather(-1, order).to(torch.uint8)
    order = order.gather(-1, torch.sort(excluded, dim=-1, stable=True).indices)
    return order[..., :k]


def top_k(scores: torch.Tensor, mask: torch.Tensor, k: int) -> list[int]:
    """Columns of the k best candidates of one user (``top_k_columns`` of one row)."""
    k = min(k, int(mask.sum()))
    if k == 0:
        return []
    return top_k_columns(scores, mask, k).tolist()


def minmax_over_candidates(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-user min-max scaling to [0, 1] over the candidates, so models on other scales can mix."""
    big = torch.finfo(scores.dtype).max
    low = torch.where(mask, scores, torch.full_like(scores, big)).min(dim=1, keepdim=True).values
    high = torch.where(mask, scores, torch.full_like(scores, -big)).max(dim=1, keepdim=True).values
    spread = (high - low).clamp(min=torch.finfo(scores.dtype).eps)
    return ((scores - low) / spread).clamp(0.0, 1.0)


def hybrid_scores(
    scores: dict[str, torch.Tensor], mask: torch.Tensor, weights: list[dict[str, float]]
) -> torch.Tensor:
    """Each user's weighted mix of the models' min-max-scaled rankings (one weight dict per
    row); the Triton graph ``hybrid_blend`` computes the same."""
    mixed = torch.zeros_like(mask, dtype=torch.float32)
    for name, part in scores.items():
        row_weights = torch.tensor([w[name] for w in weights], dtype=torch.float32).unsqueeze(1)
        mixed += row_weights * minmax_over_candidates(part, mask)
    return mixed


def because(vectors: torch.Tensor, recommended: list[int], user: UserQuery) -> list[list[int]]:
    """For each recommended column, the columns of the user's liked movies most similar to it."""
    liked = [c for c, rating in user.ratings.items() if rating >= LIKED_RATING]
    if not liked or not recommended:
        return [[] for _ in recommended]
    # Cosines (the rows are unit length); index_select with tensors, not Python lists.
    similarity = (
        vectors.index_select(0, torch.tensor(recommended))
        @ vectors.index_select(0, torch.tensor(liked)).t()
    )
    best = similarity.topk(min(MAX_BECAUSE, len(liked)), dim=1)
    return [
        [liked[i] for i, s in zip(idx, sims, strict=True) if s > 0]
        for sims, idx in zip(best.values.tolist(), best.indices.tolist(), strict=True)
    ]


# -- answers ------------------------------------------------------------------------------------
def popular_answer(catalogue: Catalogue, user: UserQuery) -> dict[str, Any]:
    """A new user (no ratings): the most rated movies in training, labelled as such."""
    mask = torch.ones(catalogue.n_items, dtype=torch.bool)
    columns = top_k(catalogue.popularity, mask, user.k)
    items = []
    for column in columns:
        item = dict(catalogue.described[column])
        item["score"] = float(catalogue.popularity[column])
        item["because"] = []
        items.append(item)
    return {
        "strategy": STRATEGY_POPULARITY,
        "note": "no ratings given: the most rated movies in training, not personalised",
        "recommendations": items,
    }


def model_answer(
    catalogue: Catalogue,
    user: UserQuery,
    columns: list[int],
    scores: torch.Tensor,
    predicted_rating: torch.Tensor | None = None,
    because_columns: list[list[int]] | None = None,
) -> dict[str, Any]:
    """One user's recommendations from the model's scores (rows of [n_items] for that user)."""
    items = []
    index = torch.tensor(columns, dtype=torch.long)
    chosen_scores = scores.index_select(0, index).tolist()
    chosen_ratings = (
        None if predicted_rating is None else predicted_rating.index_select(0, index).tolist()
    )
    for position, column in enumerate(columns):
        item = dict(catalogue.described[column])
        item["score"] = chosen_scores[position]
        if chosen_ratings is not None:
            item["predicted_rating"] = chosen_ratings[position]
        if user.explain and because_columns is not None:
            item["because"] = [catalogue.item_ids[c] for c in because_columns[position]]
        items.append(item)
    return {"strategy": STRATEGY_MODEL, "recommendations": items}


def ranked_answers(
    catalogue: Catalogue,
    users: list[UserQuery],
    ranking: torch.Tensor,
    predicted: torch.Tensor | None,
    vectors: torch.Tensor | None,
    mask: torch.Tensor | None = None,
) -> list[dict[str, Any]]:
    """The one ranking path: mask -> top-k -> "because" -> answer, for users who rated
    something. ``ranking`` [users, n_items] is what the model ranks by (the hybrid's already
    mixed), ``predicted`` the predicted ratings shown beside it (SAE and hybrid), ``vectors``
    None leaves the explanations out, ``mask`` is ``candidate_mask`` of the users when the
    caller has it. Every backend answers through here."""
    if mask is None:
        mask = candidate_mask(users, catalogue.n_items)
    answers = []
    for row, user in enumerate(users):
        columns = top_k(ranking[row], mask[row], user.k)
        reasons = because(vectors, columns, user) if user.explain and vectors is not None else None
        answer = model_answer(
            catalogue,
            user,
            columns,
            ranking[row],
            None if predicted is None else predicted[row],
            reasons,
        )
        if user.weights is not None:
            answer["weights"] = user.weights
        answers.append(answer)
    return answers


def served_ranking(
    model: str,
    users: list[UserQuery],
    ranking: dict[str, torch.Tensor],
    scores: dict[str, torch.Tensor],
    mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(what ``model`` ranks by, its predicted ratings or None) from its parts' outputs: the
    hybrid mixes the parts' rankings over the candidates (``mask``) with each user's weights;
    the SAE's scores are ratings."""
    predicted = scores.get(SAE) if model in (SAE, HYBRID) else None
    if model != HYBRID:
        return ranking[model], predicted
    parts = {part: ranking[part] for part in HYBRID_PARTS}
    return hybrid_scores(parts, mask, [user.weights or {} for user in users]), predicted


def envelope(model: str, version: str, request: ParsedRequest, answers: list[dict]) -> dict:
    """The response body for one request: one answer, or a list for a "users" body."""
    head = {"model": model, "version": version}
    if request.is_batch:
        return {**head, "users": answers}
    return {**head, **answers[0]}


def to_json(value: Any) -> str:
    return _dumps(value).decode("utf-8")
