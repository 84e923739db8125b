"""Input validation shared by forms and the JSON API: one message per bad field."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Literal, TypeVar, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from handlers import contract
from web.catalog import Catalog
from web.profiles import MAX_RATING, MIN_RATING

MAX_K = contract.MAX_K
DEFAULT_K = contract.DEFAULT_K
MAX_BATCH_USERS = 64
MAX_USER_ID_LENGTH = 64
FEEDBACK_KINDS = contract.FEEDBACK_KINDS

ModelName = Literal["sae", "rbm", "hybrid"]
Stars = Annotated[float, Field(ge=MIN_RATING, le=MAX_RATING, strict=True)]
BodyT = TypeVar("BodyT", bound=BaseModel)


class InvalidInput(ValueError):
    """A request field is wrong; ``errors`` lists ``(field, message)`` pairs (HTTP 422)."""

    def __init__(self, errors: Iterable[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{field}: {message}" for field, message in self.errors))


class _Body(BaseModel):
    # Unknown fields are refused and named, so a typo never silently falls back to a default.
    model_config = ConfigDict(extra="forbid")


class Query(_Body):
    ratings: dict[str, Stars] = {}
    k: StrictInt = Field(DEFAULT_K, ge=1, le=MAX_K)
    exclude_rated: StrictBool = True
    explain: StrictBool = True
    user_id: str | None = Field(None, min_length=1, max_length=MAX_USER_ID_LENGTH)

    @field_validator("ratings")
    @classmethod
    def _integer_ids_and_stars(cls, ratings: dict[str, float]) -> dict[str, float]:
        for movie, stars in ratings.items():
            if not movie.strip().isdigit():
                raise ValueError(f"movie id {movie!r} is not a positive integer")
            if stars != int(stars):
                raise ValueError(f"rating of movie {movie} must be a whole number of stars")
        return ratings

    def movie_ratings(self) -> dict[int, int]:
        return {int(movie): int(stars) for movie, stars in self.ratings.items()}


class Weights(_Body):
    sae: float = Field(ge=0.0, le=1.0)
    rbm: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _not_both_zero(self) -> Weights:
        if self.sae + self.rbm <= 0:
            raise ValueError("weights must not both be zero")
        return self


class RecommendBody(Query):
    weights: Weights | None = None


class BatchBody(_Body):
    model: ModelName
    users: list[Query] = Field(min_length=1, max_length=MAX_BATCH_USERS)
    weights: Weights | None = None


class CompareBody(Query):
    models: list[ModelName] = list(get_args(ModelName))  # every served model
    weights: Weights | None = None


class FeedbackBody(_Body):
    user_id: str = Field(min_length=1, max_length=MAX_USER_ID_LENGTH)
    movie_id: StrictInt = Field(ge=1)
    model: ModelName
    kind: Literal["up", "down", "watched"]


class TokenBody(_Body):
    api_key: str = Field(min_length=1)


def parse(model: type[BodyT], data: object) -> BodyT:
    """Validate ``data``; raise InvalidInput naming each bad field."""
    if not isinstance(data, Mapping):
        raise InvalidInput([("body", "must be a JSON object")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(
            (".".join(str(part) for part in error["loc"]) or "body", _message(error))
            for error in exc.errors()
        ) from exc


def _message(error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "missing":
        return "required field missing"
    return error["msg"].removeprefix("Value error, ")


def check_movies(catalog: Catalog, movie_ids: Iterable[int], field: str = "ratings") -> None:
    unknown = sorted(movie for movie in movie_ids if movie not in catalog)
    if unknown:
        shown = ", ".join(str(movie) for movie in unknown[:10])
        raise InvalidInput([(field, f"unknown movie id(s): {shown}")])


def form_int(value: str | None, field: str, low: int, high: int) -> int:
    """A whole number from a form field, within [low, high]."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise InvalidInput([(field, f"must be a whole number from {low} to {high}")]) from None
    if not low <= number <= high:
        raise InvalidInput([(field, f"must be from {low} to {high}, got {number}")])
    return number
