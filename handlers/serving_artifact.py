"""The serving artifact: everything that serves a model version needs besides the graph itself.

One file per served model (sae, rbm, hybrid), written by export (``training.export.artifact``)
into each ``.mar`` and beside the Triton graphs (``triton_repo/<model>/1/``): the metadata
(version, dataset, MLflow runs, test figures), the catalogue in column order (item ids, titles,
years, genres), the train-set popularity the new-user fallback ranks by, and the unit item
vectors the "because you rated" explanations compare. Servers read this file and nothing else:
no checkpoint, no ``train.pt``. Torch only, so it ships in the ``.mar``; it loads with
``weights_only=True`` (plain containers and tensors, no pickled code).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

ARTIFACT_FILE = "serving_artifact.pt"
FORMAT = 1


@dataclass(frozen=True)
class ServingArtifact:
    model: str
    version: str
    item_ids: list[int]
    movies: list[dict[str, Any]]  # {movie_id, title, year, genres} in column order
    popularity: torch.Tensor  # float32 [n_items]: train ratings per movie
    vectors: torch.Tensor  # float32 [n_items, d], unit rows: what explanations compare
    metadata: dict[str, Any]

    def __post_init__(self) -> None:
        n_items = len(self.item_ids)
        if len(self.movies) != n_items or self.popularity.shape != (n_items,):
            raise ValueError(f"{self.model}: catalogue, popularity and item ids disagree in size")
        if self.vectors.dim() != 2 or self.vectors.shape[0] != n_items:
            raise ValueError(f"{self.model}: item vectors must be [n_items, d]")

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save({"format": FORMAT, **self.__dict__}, tmp)
        tmp.replace(path)  # a server never sees half a file under the real name
        return path

    @classmethod
    def load(cls, path: Path | str) -> ServingArtifact:
        try:
            with open(path, "rb") as file:
                return cls.read(file, str(path))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path}: no serving artifact; export the models (`make export`)"
            ) from None

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> ServingArtifact:
        """An artifact read from memory (e.g. a member of a ``.mar``)."""
        return cls.read(io.BytesIO(data), where)

    @classmethod
    def read(cls, file: BinaryIO, where: str) -> ServingArtifact:
        found = torch.load(file, map_location="cpu", weights_only=True)
        if not isinstance(found, dict) or found.pop("format", None) != FORMAT:
            raise ValueError(f"{where}: not a serving artifact of format {FORMAT}; re-export")
        return cls(**found)
