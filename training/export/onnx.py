"""Export the checkpoints to ONNX for Triton: ``triton_repo/<model>/1/model.onnx``, and for the
CPU configs the scoring models' int8 twin ``model.int8.onnx``.

Each graph takes raw ratings FP32 [batch, n_items] (0 = unrated, 1-5 stars, columns in
``metadata.json`` ``item_ids`` order; the model's encoding is inside the graph) and returns
``scores`` FP32 [batch, n_items] (the SAE's predicted ratings), ``ranking`` (what the served list
is ranked by) and the top-k unrated items by ranking (``top_ids``: MovieLens ids,
``top_scores``), so a client can ask for 50 ids instead of every score. A third graph,
``hybrid_blend``, mixes the two models' rankings with per-request weights; the ``hybrid`` ensemble
chains the three.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Annotated

import numpy as np
import onnx
import torch
import typer
from torch import nn

from training.config import ConfigError, Paths, get_logger
from training.export.from_registry import checkpoint_folder, parse_versions, registry_metadata
from training.models import load_checkpoint
from training.models.base import BaseRecommender
from training.models.serving import SERVED_TOLERANCE, serving_module
from training.serving import triton_names as tn

log = get_logger("export")

# Exported graphs must match PyTorch this closely on the verification batch.
PARITY_ATOL = 1e-5
VERIFY_USERS = 16
VERIFY_DENSITY = 0.05
VERIFY_SEED = 0
EXAMPLE_BATCH = 2  # torch.export specialises sizes 0 and 1, so trace with 2 and mark it dynamic
WEIGHT_EPSILON = 1e-12  # keeps the hybrid's normalisation finite when a client sends zeros
# Buffers whose products stay float32 in the int8 twin: the SAE's item codes feed conjugate-
# gradient steps, which int8 rounding would throw off (and whose shared initializer, read both
# as is and transposed, the quantizer cannot rescale).
FLOAT_BUFFERS = ("item_codes",)


class ExportError(RuntimeError):
    """An exported graph failed its checks (onnx.checker or parity with PyTorch)."""


def top_unrated(
    scores: torch.Tensor, ratings: torch.Tensor, item_ids: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best items the user has not rated: (MovieLens ids, scores), best first."""
    masked = scores.masked_fill(ratings > 0, float("-inf"))
    top_scores, columns = masked.topk(k, dim=1)
    return item_ids[columns], top_scores


class ServingGraph(nn.Module):
    """A model's inference module plus its masked top-k: what Triton serves for sae and rbm."""

    item_ids: torch.Tensor  # a buffer (register_buffer), declared for the type checker

    def __init__(self, model: nn.Module, item_ids: list[int], k: int = tn.TOP_K) -> None:
        super().__init__()
        self.model = model
        self.k = k
        self.register_buffer("item_ids", torch.tensor(item_ids, dtype=torch.int64))

    def forward(
        self, ratings: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        scores, ranking = self.model(ratings)
        return (scores, ranking, *top_unrated(ranking, ratings, self.item_ids, self.k))


def minmax_over_unrated(scores: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
    """Per-user min-max scaling to [0, 1] over the unrated items, so models on other scales mix.

    The same rule as TorchServe's hybrid (``handlers.recommendation.minmax_over_candidates``).
    """
    candidate = ratings <= 0
    big = torch.finfo(scores.dtype).max
    low = torch.where(candidate, scores, torch.full_like(scores, big)).amin(dim=1, keepdim=True)
    high = torch.where(candidate, scores, torch.full_like(scores, -big)).amax(dim=1, keepdim=True)
    spread = (high - low).clamp(min=torch.finfo(scores.dtype).eps)
    return ((scores - low) / spread).clamp(0.0, 1.0)


class HybridBlend(nn.Module):
    """Weighted mix of the SAE's and the RBM's rankings, each min-max scaled over unrated items.

    ``weights`` [batch, 2] = (w_sae, w_rbm) per request, normalised to sum 1; negative count as 0.
    """

    item_ids: torch.Tensor  # a buffer, as in ServingGraph

    def __init__(self, item_ids: list[int], k: int = tn.TOP_K) -> None:
        super().__init__()
        self.k = k
        self.register_buffer("item_ids", torch.tensor(item_ids, dtype=torch.int64))

    def forward(
        self,
        ratings: torch.Tensor,
        sae_ranking: torch.Tensor,
        rbm_ranking: torch.Tensor,
        weights: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        weights = weights.clamp(min=0.0)
        weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=WEIGHT_EPSILON)
        w_sae, w_rbm = weights[:, :1], weights[:, 1:]
        sae_unit = minmax_over_unrated(sae_ranking, ratings)
        scores = w_sae * sae_unit + w_rbm * minmax_over_unrated(rbm_ranking, ratings)
        return (scores, *top_unrated(scores, ratings, self.item_ids, self.k))


def _batch_dim() -> torch.export.Dim:
    return torch.export.Dim("batch", min=1, max=tn.MAX_BATCH_SIZE * 64)


def _to_onnx(
    module: nn.Module,
    example: dict[str, torch.Tensor],
    path: Path,
    doc: str,
    metadata: dict[str, str],
    outputs: tuple[tn.TensorSpec, ...] = tn.OUTPUTS,
) -> onnx.ModelProto:
    """Trace with a dynamic batch axis, save as one self-contained file, check it."""
    module.eval()
    batch = _batch_dim()
    output_names = [spec.name for spec in outputs]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message="# The axis name")  # shared batch axis: fine
        program = torch.onnx.export(
            module,
            tuple(example.values()),
            input_names=list(example),
            output_names=output_names,
            dynamic_shapes={name: {0: batch} for name in example},
            opset_version=tn.ONNX_OPSET,
            dynamo=True,
            verbose=False,
        )
    if program is None:  # only the legacy exporter (dynamo=False) returns nothing
        raise ExportError(f"{path}: torch.onnx.export returned no program")
    model = program.model_proto
    # Triton 24.10's onnxruntime reads IR <= 10; nothing newer is used by these graphs.
    model.ir_version = min(model.ir_version, tn.MAX_ONNX_IR_VERSION)
    model.doc_string = doc
    model.producer_name = "movierec"
    onnx.helper.set_model_props(model, metadata)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path}: onnx.checker rejected the graph: {exc}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".onnx.tmp")
    # One file (weights inline): Triton copies and loads model.onnx alone.
    onnx.save_model(model, tmp, save_as_external_data=False)
    tmp.replace(path)  # never leave a half-written graph under the served name
    return model


def _verification_ratings(n_items: int, users: int = VERIFY_USERS) -> torch.Tensor:
    """Sparse random 1-5 ratings; every user rates at least one item."""
    generator = torch.Generator().manual_seed(VERIFY_SEED)
    stars = torch.randint(1, 6, (users, n_items), generator=generator).float()
    rated = torch.rand(users, n_items, generator=generator) < VERIFY_DENSITY
    rated[:, 0] = True
    return stars * rated


def run_onnx(
    path: Path, feeds: dict[str, np.ndarray], batch_size: int | None = None
) -> dict[str, np.ndarray]:
    """Run a graph with onnxruntime on CPU; returns every output by name. With ``batch_size``
    the rows go in batches of that many through one session, and the outputs are joined."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    rows = next(iter(feeds.values())).shape[0]
    step = batch_size or max(rows, 1)
    parts = [
        session.run(names, {name: array[start : start + step] for name, array in feeds.items()})
        for start in range(0, max(rows, 1), step)
    ]
    return {name: np.concatenate([part[i] for part in parts]) for i, name in enumerate(names)}


def _verify(
    path: Path, module: nn.Module, example: dict[str, torch.Tensor], tolerance: float = PARITY_ATOL
) -> float:
    """Largest |onnxruntime - PyTorch| over the scores (and the ranking, where the graph has
    one); raises ExportError above ``tolerance``."""
    with torch.no_grad():
        expected = module(*example.values())
    actual = run_onnx(path, {name: tensor.numpy() for name, tensor in example.items()})
    compared = [tn.SCORES.name] + ([tn.RANKING.name] if tn.RANKING.name in actual else [])
    error = max(
        float(np.abs(actual[name] - expected[index].numpy()).max())
        for index, name in enumerate(compared)
    )
    if error > tolerance:
        raise ExportError(f"{path}: onnxruntime differs from PyTorch by {error:.2e}")
    return error


def float_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes reading a FLOAT_BUFFERS initializer, directly or transposed."""
    sources = {init.name for init in model.graph.initializer if init.name.endswith(FLOAT_BUFFERS)}
    readers = [node for node in model.graph.node if sources.intersection(node.input)]
    sources |= {out for node in readers if node.op_type == "Transpose" for out in node.output}
    return [node.name for node in model.graph.node if sources.intersection(node.input)]


def export_int8(path: Path, trained: nn.Module, n_items: int) -> Path:
    """``path``'s twin with int8 weights (onnxruntime dynamic quantization, per output channel),
    for the CPU configs; raises ExportError if a score moves more than SERVED_TOLERANCE from
    the trained module's (the bound TorchServe's int8 form is held to).

    Activations are quantized per call, over the whole batch (as in PyTorch's dynamic
    quantization), so a user's scores move slightly (~0.01) with the requests Triton batches
    them with: the check covers a batch and a lone user."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = path.with_name(tn.ONNX_INT8_FILENAME)
    model = onnx.load(str(path))
    # The quantizer re-infers every shape, and the exporter's recorded ones for the fused SAE's
    # layers clash with what it infers: it needs the graph without them.
    del model.graph.value_info[:]
    with tempfile.TemporaryDirectory() as tmp:
        plain, quantized = Path(tmp) / tn.ONNX_FILENAME, Path(tmp) / tn.ONNX_INT8_FILENAME
        onnx.save(model, str(plain))
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantizer's "consider pre-processing" hint is noise
        try:
            quantize_dynamic(
                plain,
                quantized,
                weight_type=QuantType.QInt8,
                per_channel=True,
                nodes_to_exclude=float_nodes(model),
            )
        finally:
            root.setLevel(level)
        batch = _verification_ratings(n_items)
        error = max(
            _verify(quantized, trained, {tn.RATINGS.name: ratings}, SERVED_TOLERANCE)
            for ratings in (batch, batch[:1])
        )
        quantized.replace(target)
    log.info("exported %s (int8, max |onnx - torch| = %.3f)", target, error)
    return target


def onnx_path(repo: Path, model: str) -> Path:
    return repo / model / tn.MODEL_VERSION / tn.ONNX_FILENAME


def _metadata(recommender: BaseRecommender, checkpoint: Path) -> dict[str, str]:
    extra = getattr(recommender, "extra", {})
    return {
        "model": recommender.name,
        "checkpoint": checkpoint.name,
        "n_items": str(recommender.n_items),
        "top_k": str(tn.TOP_K),
        "dataset": str(extra.get("dataset", "")),
        "mlflow_run_id": str(extra.get("mlflow_run_id") or ""),
        **registry_metadata(extra),
    }


def export_model(checkpoint: Path, repo: Path) -> tuple[Path, list[int]]:
    """Export one checkpoint to ``repo/<name>/1/model.onnx``; returns the path and its item ids."""
    recommender = load_checkpoint(checkpoint)
    item_ids = list(getattr(recommender, "extra", {}).get("item_ids") or [])
    if len(item_ids) != recommender.n_items:
        raise ConfigError(
            f"{checkpoint}: holds {len(item_ids)} item_ids for {recommender.n_items} items; "
            "retrain it with `movierec train`"
        )
    if recommender.n_items < tn.TOP_K:
        raise ConfigError(f"{checkpoint}: {recommender.n_items} items, fewer than top-k {tn.TOP_K}")
    # Dense input layer (an exported graph cannot hold a data-dependent number of rated movies)
    # and float32 weights (int8 dynamic quantization is an eager PyTorch form; onnxruntime has
    # its own, and the GPU does not need it).
    graph = ServingGraph(
        serving_module(recommender.model, sparse_input=False, quantize=False), item_ids
    )
    path = onnx_path(repo, recommender.name)
    example = {tn.RATINGS.name: _verification_ratings(recommender.n_items)[:EXAMPLE_BATCH]}
    _to_onnx(
        graph,
        example,
        path,
        f"movierec {recommender.name}: raw ratings -> scores, ranking, top-k",
        _metadata(recommender, checkpoint),
        tn.MODEL_OUTPUTS[recommender.name],
    )
    trained = ServingGraph(recommender.model, item_ids)  # parity with the trained module
    error = _verify(path, trained, {tn.RATINGS.name: _verification_ratings(recommender.n_items)})
    log.info("exported %s -> %s (max |onnx - torch| = %.1e)", checkpoint, path, error)
    export_int8(path, trained, recommender.n_items)
    return path, item_ids


def export_blend(item_ids: list[int], repo: Path) -> Path:
    """The hybrid ensemble's blending step, as its own graph."""
    blend = HybridBlend(item_ids)
    n_items = len(item_ids)
    generator = torch.Generator().manual_seed(VERIFY_SEED)

    def example(users: int) -> dict[str, torch.Tensor]:
        return {
            tn.RATINGS.name: _verification_ratings(n_items, users),
            tn.SAE_RANKING.name: torch.rand(users, n_items, generator=generator),
            tn.RBM_RANKING.name: torch.rand(users, n_items, generator=generator),
            tn.WEIGHTS.name: torch.rand(users, tn.N_HYBRID_WEIGHTS, generator=generator),
        }

    path = onnx_path(repo, tn.HYBRID_BLEND)
    _to_onnx(
        blend,
        example(EXAMPLE_BATCH),
        path,
        "movierec hybrid: weighted SAE + RBM scores",
        {"model": tn.HYBRID_BLEND, "n_items": str(n_items), "top_k": str(tn.TOP_K)},
    )
    _verify(path, blend, example(VERIFY_USERS))
    log.info("exported %s -> %s", tn.HYBRID_BLEND, path)
    return path


def export_all(
    checkpoints: dict[str, Path], repo: Path, prepared_folder: Path | None = None
) -> dict[str, Path]:
    """Export the SAE, the RBM and the hybrid blend, and each served model's serving artifact
    beside its graph (``<model>/1/serving_artifact.pt``); the two checkpoints must share a
    catalogue, the prepared dataset's (default: the checkpoints' dataset under data/)."""
    from training.data.preprocess import load_prepared
    from training.export.artifact import artifact_path, build_artifacts

    paths: dict[str, Path] = {}
    catalogues: dict[str, list[int]] = {}
    for name in tn.SCORING_MODELS:
        if not checkpoints[name].is_file():
            raise FileNotFoundError(f"{checkpoints[name]}: checkpoint not found; run `make up`")
        paths[name], catalogues[name] = export_model(checkpoints[name], repo)
    if catalogues[tn.SAE] != catalogues[tn.RBM]:
        raise ConfigError(
            f"{checkpoints[tn.SAE]} and {checkpoints[tn.RBM]} were trained on different "
            "catalogues; retrain both on the same dataset"
        )
    paths[tn.HYBRID_BLEND] = export_blend(catalogues[tn.SAE], repo)
    recommenders = {name: load_checkpoint(checkpoints[name]) for name in tn.SCORING_MODELS}
    if prepared_folder is None:
        dataset = recommenders[tn.SAE].extra.get("dataset") or "ml-100k"
        prepared_folder = Paths().prepared(dataset)
    artifacts = build_artifacts(
        recommenders, checkpoints, load_prepared(prepared_folder), tn.MODEL_VERSION
    )
    for model, artifact in artifacts.items():
        # The ensemble has no graph of its own; its version folder holds its artifact.
        artifact.save(artifact_path(repo / model / tn.MODEL_VERSION))
    return paths


def export_onnx_command(
    checkpoints: Annotated[
        Path | None, typer.Option(help="Folder with sae.pt and rbm.pt (default data/checkpoints).")
    ] = None,
    repo: Annotated[
        Path | None, typer.Option(help="Triton model repository (default triton_repo/).")
    ] = None,
    prepared: Annotated[
        Path | None,
        typer.Option(
            help="Prepared dataset the serving artifacts' catalogue comes from "
            "(default data/preprocessed/<the checkpoints' dataset>)."
        ),
    ] = None,
    from_registry: Annotated[
        bool, typer.Option("--from-registry", help="Export the MLflow registry's champions.")
    ] = False,
    version: Annotated[
        str | None,
        typer.Option(help="With --from-registry: pin versions, sae=N,rbm=M (default: champion)."),
    ] = None,
    params: Annotated[Path, typer.Option("--params", help="params.yaml to read.")] = Path(
        "params.yaml"
    ),
) -> None:
    """Export SAE, RBM and the hybrid blend to ONNX (triton_repo/<model>/1/model.onnx) and
    each served model's serving artifact beside its graph."""
    paths = Paths()
    folder = checkpoints or paths.checkpoints
    # The exporter's progress lines and torchvision notes are noise in DVC logs.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        if version and not from_registry:
            raise ValueError("--version picks registry versions: add --from-registry")
        pinned = parse_versions(version, tn.SCORING_MODELS)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    source = checkpoint_folder(from_registry, pinned, params, folder, tn.SCORING_MODELS)
    with source as models:
        written = export_all(
            {name: models / f"{name}.pt" for name in tn.SCORING_MODELS},
            repo or paths.triton_repo,
            prepared,
        )
    for name, path in written.items():
        typer.echo(f"{name}: {path}")
