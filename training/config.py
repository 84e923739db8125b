"""The one place that owns configuration: paths, validated params, logging and MLflow wiring.

Everything else imports from here, so no module reads ``params.yaml`` or environment variables
on its own.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Both tools phone home by default; the project never wants that.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
DATASETS = ("ml-100k", "ml-1m")


class ConfigError(ValueError):
    """A configuration file or variable is invalid; the message names it."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(_Section):
    dataset: Literal["ml-100k", "ml-1m"] = "ml-100k"
    # ml-100k ships canonical splits (u1..u5, ua, ub); ml-1m has none, so it is split at random.
    split: str = "u1"
    test_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    seed: int = 42
    rbm_threshold: int = Field(3, ge=1, le=5)

    @model_validator(mode="after")
    def _split_matches_dataset(self) -> DataParams:
        allowed = {"ml-100k": {"u1", "u2", "u3", "u4", "u5", "ua", "ub"}, "ml-1m": {"random"}}
        if self.split not in allowed[self.dataset]:
            raise ValueError(
                f"split {self.split!r} is not available for {self.dataset}; "
                f"choose one of {sorted(allowed[self.dataset])}"
            )
        return self


class EarlyStoppingParams(_Section):
    patience: int = Field(10, ge=1)
    min_delta: float = Field(0.0, ge=0.0)


class TrainParams(_Section):
    seed: int = 42
    # Share of each user's training ratings held out to pick the best epoch.
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # CPU threads for torch. The models' matrices are small: extra threads gain little and
    # spin-wait badly when the cores are shared; 0 keeps torch's own default.
    torch_threads: int = Field(1, ge=0)
    early_stopping: EarlyStoppingParams = EarlyStoppingParams()


class SAEParams(_Section):
    # Encoder sizes; the decoder mirrors them: n_items -> 20 -> 10 -> 20 -> n_items by default.
    hidden_layers: list[int] = [20, 10]
    activation: Literal["sigmoid", "tanh", "relu", "selu", "elu"] = "sigmoid"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    input_corruption: float = Field(0.0, ge=0.0, lt=1.0)
    # With input corruption: score every observed rating ("all") or only the hidden ones.
    loss_on: Literal["all", "hidden"] = "all"
    optimizer: Literal["rmsprop", "adam", "adamw", "sgd"] = "rmsprop"
    lr: float = Field(0.01, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    epochs: int = Field(200, ge=1)
    batch_size: int = Field(32, ge=1)
    # Learn residuals over a global mean + item bias + folded-in user bias (all inside the model).
    center: bool = True
    bias_reg: float = Field(5.0, ge=0.0)
    # Also feed which items were rated (0/1 each) beside the ratings: 2 * n_items inputs.
    implicit_input: bool = False
    # Exponential moving average of the weights after every step (0 = off): the average is
    # what validates, early-stops and is saved.
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0)
    # Learning rate multiplied by this after every epoch (1 = constant).
    lr_decay: float = Field(1.0, gt=0.0, le=1.0)
    # Independently trained autoencoders whose predictions are averaged (1 = the seed's one).
    n_members: int = Field(1, ge=1)
    # "Will watch": a Mult-DAE (Liang et al. 2018) over which films a user rated, trained beside
    # the rating members with a multinomial likelihood over all items (0 = none: the SAE then
    # ranks by predicted rating, which favours films one or two people loved).
    watch_hidden: int = Field(0, ge=0)
    watch_activation: Literal["sigmoid", "tanh", "relu", "selu", "elu"] = "tanh"
    watch_dropout: float = Field(0.5, ge=0.0, lt=1.0)  # on the input, as Mult-DAE
    # The served ranking is softmax(watch logits + w * predicted rating): "will watch" times
    # exp(w * "will like"). The w of this list with the best validation NDCG@10 is kept.
    rank_weights: list[float] = [0.0, 0.25, 0.5, 1.0, 2.0]
    # "Item codes": an item-based autoencoder (I-AutoRec) over each film's residual ratings by
    # the training users, trained beside the members; its hidden layer is the film's code. A
    # user's row over the codes is a ridge regression of their own residual ratings, solved at
    # request time by a fixed number of conjugate-gradient steps (0 = none).
    item_hidden: int = Field(0, ge=0)
    item_dropout: float = Field(0.5, ge=0.0, lt=1.0)  # on the hidden layer
    item_corruption: float = Field(0.4, ge=0.0, lt=1.0)  # hides observed inputs, as for members
    item_weight_decay: float = Field(1e-3, ge=0.0)
    item_ridges: list[float] = [30.0]  # the ridge penalty: the best on validation is kept
    item_cg_steps: int = Field(20, ge=1)
    # Predicted rating = m * members' mean + (1 - m) * the item codes' ridge prediction; the m
    # of this list with the best validation RMSE is kept (1 without item codes).
    member_weights: list[float] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]

    @field_validator("item_ridges")
    @classmethod
    def _item_ridges(cls, ridges: list[float]) -> list[float]:
        if not ridges or any(r <= 0 for r in ridges):
            raise ValueError("item_ridges must be a non-empty list of positive numbers")
        return ridges

    @field_validator("member_weights")
    @classmethod
    def _member_weights(cls, weights: list[float]) -> list[float]:
        if not weights or any(not 0.0 <= w <= 1.0 for w in weights):
            raise ValueError("member_weights must be a non-empty list of numbers in [0, 1]")
        return weights

    @field_validator("rank_weights")
    @classmethod
    def _rank_weights(cls, weights: list[float]) -> list[float]:
        if not weights or any(w < 0 for w in weights):
            raise ValueError("rank_weights must be a non-empty list of non-negative numbers")
        return weights

    @field_validator("hidden_layers")
    @classmethod
    def _positive_layers(cls, layers: list[int]) -> list[int]:
        if not layers or any(size < 1 for size in layers):
            raise ValueError("hidden_layers must be a non-empty list of positive sizes")
        return layers


class RBMParams(_Section):
    n_hidden: int = Field(300, ge=1)
    # "liked": rating >= threshold -> 1, below -> 0, unrated -> -1 (held fixed during CD).
    # "implicit": rated -> 1, unrated -> 0.
    encoding: Literal["liked", "implicit"] = "implicit"
    cd_k: int = Field(1, ge=1)
    lr: float = Field(0.01, gt=0.0)
    momentum: float = Field(0.5, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(100, ge=1)
    # Independently trained RBMs whose probabilities are averaged (1 = one RBM).
    n_members: int = Field(1, ge=1)


class EvaluateParams(_Section):
    k_values: list[int] = [5, 10, 20]
    relevance_threshold: int = Field(4, ge=1, le=5)


class TuneParams(_Section):
    n_trials: int = Field(20, ge=1)
    timeout_s: int | None = Field(None, ge=1)
    trial_epochs: int = Field(40, ge=1)


class SAEGateParams(_Section):
    # How much worse than the champion a candidate may be and still replace it: test RMSE up
    # by at most rmse_tolerance, served NDCG@k (what TorchServe answers) down by ndcg_tolerance.
    rmse_tolerance: float = Field(0.003, ge=0.0)
    ndcg_tolerance: float = Field(0.005, ge=0.0)


class RBMGateParams(_Section):
    ndcg_tolerance: float = Field(0.005, ge=0.0)  # test NDCG@k down by at most this


class GateParams(_Section):
    """The promotion gate of ``movierec retrain`` (training/gate.py)."""

    sae: SAEGateParams = SAEGateParams()
    rbm: RBMGateParams = RBMGateParams()


class MLflowParams(_Section):
    experiment_name: str = "movierec"
    registered_model_prefix: str = "movierec"
    best_alias: str = "champion"


class Params(_Section):
    data: DataParams = DataParams()
    train: TrainParams = TrainParams()
    sae: SAEParams = SAEParams()
    rbm: RBMParams = RBMParams()
    evaluate: EvaluateParams = EvaluateParams()
    tune: TuneParams = TuneParams()
    mlflow: MLflowParams = MLflowParams()
    gate: GateParams = GateParams()


def load_params(path: Path | str | None = None) -> Params:
    """Read and validate ``params.yaml``; errors name the file and the offending key."""
    path = Path(path) if path is not None else REPO_ROOT / "params.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return Params.model_validate(raw)
    except Exception as exc:  # pydantic's ValidationError lists every bad key
        raise ConfigError(f"{path}: invalid params:\n{exc}") from exc


def default_root() -> Path:
    """The working directory when it is a checkout of the project (it holds dvc.yaml), else the
    checkout this package was installed from in editable mode."""
    cwd = Path.cwd()
    return cwd if (cwd / "dvc.yaml").is_file() else REPO_ROOT


class Paths:
    """Where the pipeline reads and writes, relative to one root (the repo by default)."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root or os.environ.get("MOVIEREC_HOME") or default_root()).resolve()
        self.data = self.root / "data"
        self.raw = self.data / "raw"
        self.preprocessed = self.data / "preprocessed"
        self.checkpoints = self.data / "checkpoints"
        self.reports = self.data / "reports"
        self.model_store = self.root / "model_store"
        self.triton_repo = self.root / "triton_repo"
        self.logs = self.root / "logs"
        self.mlruns = self.root / "mlruns"
        # The web app's SQLite file when DATABASE_URL is unset (web/config.py, the snapshot).
        self.app_database = self.data / "web.sqlite3"

    def raw_dataset(self, dataset: str) -> Path:
        return self.raw / dataset

    def prepared(self, dataset: str) -> Path:
        return self.preprocessed / dataset


def app_database_url(paths: Paths | None = None) -> str:
    """The web app's database (``DATABASE_URL``, as the web app reads it), for the snapshot of
    its ratings; the web app's own SQLite file when unset."""
    return os.environ.get("DATABASE_URL") or f"sqlite:///{(paths or Paths()).app_database}"


def mirror_dir() -> Path | None:
    """The local MovieLens mirror (holding ``ml-100k/`` and ``ml-1m/``), if one is configured."""
    value = os.environ.get("MOVIELENS_MIRROR")
    return Path(value).expanduser().resolve() if value else None


def get_logger(name: str) -> logging.Logger:
    """Loggers are named ``movierec.<area>`` (data, training, api) so one config drives all."""
    from training.monitoring.logging_config import configure_logging, is_configured

    if not is_configured():
        files = os.environ.get("MOVIEREC_LOG_FILES", "1") != "0"
        configure_logging(
            Paths().logs if files else None,
            level=os.environ.get("MOVIEREC_LOG_LEVEL", "INFO"),
            console_format=os.environ.get("MOVIEREC_LOG_FORMAT", "json"),
        )
    return logging.getLogger(f"movierec.{name}")
