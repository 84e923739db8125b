"""MLflow model registry: log the inference module with a signature, register it as
``<prefix>-<model>`` and move the champion alias when a version beats the current champion."""

from __future__ import annotations

import torch

from training.config import Params, get_logger
from training.models.base import BaseRecommender
from training.tracking import MLFLOW_MODEL_REQUIREMENTS

log = get_logger("training")
# The figure that decides the champion, and whether higher is better.
CHAMPION_METRIC = {"sae": ("test_rmse", False), "rbm": ("test_ndcg_at_10", True)}
SIGNATURE_EXAMPLE_USERS = 2


class RegisteredModel(torch.nn.Module):
    """The inference module as MLflow's pytorch flavour serves it: one output tensor
    [batch, 2, n_items] holding (scores, ranking), since its pyfunc takes a single tensor."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ratings: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.model(ratings), dim=1)


def registered_name(params: Params, model: str) -> str:
    return f"{params.mlflow.registered_model_prefix}-{model}"


def _beats(candidate: float, incumbent: float | None, higher_is_better: bool) -> bool:
    if incumbent is None:
        return True
    return candidate > incumbent if higher_is_better else candidate < incumbent


def register_model(
    recommender: BaseRecommender, params: Params, test_metrics: dict[str, float]
) -> str:
    """Log and register the active run's model; returns the new version."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import infer_signature

    example = torch.zeros(SIGNATURE_EXAMPLE_USERS, recommender.n_items)
    example[0, :5] = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])
    registered = RegisteredModel(recommender.model.cpu()).eval()
    with torch.no_grad():
        output = registered(example)
    name = registered_name(params, recommender.name)
    info = mlflow.pytorch.log_model(
        registered,
        name="model",
        signature=infer_signature(example.numpy(), output.numpy()),
        input_example=example.numpy(),
        pip_requirements=MLFLOW_MODEL_REQUIREMENTS,
        registered_model_name=name,
    )
    recommender.model.to(recommender.device)
    version = str(info.registered_model_version)
    metric, higher = CHAMPION_METRIC[recommender.name]
    client = mlflow.MlflowClient()
    incumbent = None
    try:
        champion = client.get_model_version_by_alias(name, params.mlflow.best_alias)
        if champion.run_id:  # a version registered without a run has no figures to beat
            incumbent = client.get_run(champion.run_id).data.metrics.get(metric)
    except MlflowException:
        pass  # no champion yet
    if metric in test_metrics and _beats(test_metrics[metric], incumbent, higher):
        client.set_registered_model_alias(name, params.mlflow.best_alias, version)
        log.info(
            "%s version %s is the new %s (%s %.4f)",
            name,
            version,
            params.mlflow.best_alias,
            metric,
            test_metrics[metric],
        )
    return version
