"""Checkpoints -> self-contained TorchServe archives: ``model_store/{sae,rbm,hybrid}.mar``.

Each archive holds the model's serving form (``training.models.serving``: the SAE's members
fused, sparse input layers, int8 output layers) as TorchScript (no project code is needed to load
it), the handler with its shared modules (the contract, the serving logic), the serving artifact
(``handlers.serving_artifact``: metadata, catalogue, popularity, item vectors) and a
``model-config.yaml`` with the serving settings (workers, batching).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import torch
import typer
import yaml

from training.config import REPO_ROOT, ConfigError, Paths, get_logger
from training.export.artifact import artifact_path, build_artifacts
from training.export.from_registry import archive_version, checkpoint_folder, parse_versions
from training.serving.torchserve_snapshot import SNAPSHOT_SECTION

if TYPE_CHECKING:
    from training.models.base import BaseRecommender

log = get_logger("export")

ARCHIVES = ("sae", "rbm", "hybrid")
# archive -> the checkpoints (TorchScript files) it carries; the first is its serialized file.
ARCHIVE_PARTS = {"sae": ("sae",), "rbm": ("rbm",), "hybrid": ("sae", "rbm")}
HANDLER_FILES = {"sae": "sae_handler.py", "rbm": "rbm_handler.py", "hybrid": "hybrid_handler.py"}
SHARED_HANDLER_MODULES = (
    "contract.py",
    "serving_artifact.py",
    "recommendation.py",
    "recommender_handler.py",
    "worker_metrics.py",
)
DEFAULT_VERSION = "1.0"
EXAMPLE_BATCH = 4  # users in the batch the serving forms are checked on
# The served forms keep their output layers in int8 (training.models.serving): each score may
# move SERVED_TOLERANCE from the trained model's, and the test figure a model is chosen on may
# get at most this much worse (the SAE's RMSE up, the RBM's NDCG@10 down); export fails otherwise.
SERVED_QUALITY_LOSS = 0.002
SERVED_QUALITY_K = 10
# An archive's top-level batching, for servers that register it without our snapshot.
UNBATCHED = {"batchSize": 1, "maxBatchDelay": 1}


@dataclass(frozen=True)
class ServingSettings:
    """Per-model TorchServe settings, written into each archive's model-config.yaml.

    Measured on 2 cores with the Locust mix (benchmarks/run_load.py, docs/benchmarks.md):
    one single-threaded worker per model, batching only what is already queued. A second
    worker per model costs the lone request 0.6-1 ms (requests alternate between workers whose
    caches are then cold), doubles the memory and, with the cores busy, adds no throughput.
    A batch delay of 0 never holds a request back; TorchServe 0.12's aggregator then stops at
    the second queued request, so batches hold at most 2 (+20 % req/s at 32 users, median
    of six runs each). Only the ``snapshot`` section carries the batching
    (training.serving.torchserve_snapshot): an archive registered another way reads 0 as a
    100 ms delay, so its top level leaves batching off. The workers log above INFO, which drops
    TorchServe's "Backend received inference" line per request from model_log.log (model
    metrics and the handlers' own lines stay; no speed change measured, 2 runs each).
    """

    workers: int = 1
    batch_size: int = 2
    max_batch_delay_ms: int = 0
    response_timeout_s: int = 30
    torch_threads: int = 1
    worker_log_level: str = "WARNING"

    def model_config(self) -> dict[str, Any]:
        return {
            "minWorkers": self.workers,
            "maxWorkers": self.workers,
            **UNBATCHED,
            "responseTimeout": self.response_timeout_s,
            "handler": {
                "torch_threads": self.torch_threads,
                "worker_log_level": self.worker_log_level,
            },
            SNAPSHOT_SECTION: {
                "batchSize": self.batch_size,
                "maxBatchDelay": self.max_batch_delay_ms,
            },
        }


DEFAULTS = ServingSettings()


def handlers_dir() -> Path:
    """The handler sources that go into the archives (the repository's ``handlers/``)."""
    try:
        import handlers
    except ModuleNotFoundError:  # an install made before handlers/ was a package
        return REPO_ROOT / "handlers"
    return Path(handlers.__file__).resolve().parent


def script_for_serving(model: torch.nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """The model's serving form (``training.models.serving``) as TorchScript, checked against
    the trained module on the example batch and on one user."""
    from training.models.serving import SERVED_TOLERANCE, serving_module

    model = model.eval()
    # TorchServe's BaseHandler life cycle loads TorchScript; torch 2.13 flags scripting as
    # deprecated in favour of torch.export, which TorchServe 0.12 only serves via AOT builds.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(serving_module(model))
    with torch.no_grad():
        for inputs in (example, example[:1]):
            pairs = zip(scripted(inputs), model(inputs), strict=True)
            if not all(torch.allclose(a, b, atol=SERVED_TOLERANCE) for a, b in pairs):
                raise RuntimeError(f"served {type(model).__name__} disagrees with the trained one")
    return scripted


def served_quality(
    recommender: BaseRecommender,
    served: torch.nn.Module,
    train: torch.Tensor,
    test: torch.Tensor,
) -> dict[str, Any]:
    """The test figures a model is judged on (RMSE of a rating model's scores, NDCG@k of every
    model's ranking), trained vs served; raises when serving costs more than
    SERVED_QUALITY_LOSS of either."""
    from training.metrics.ranking import ranking_metrics, rating_metrics

    ndcg = f"ndcg@{SERVED_QUALITY_K}"

    def figures(outputs: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        scores, ranking = outputs
        found = {ndcg: ranking_metrics(ranking, train, test, [SERVED_QUALITY_K])[ndcg]}
        if recommender.rating_scores:
            found["rmse"] = rating_metrics(scores, test)["rmse"]
        return found

    with torch.inference_mode():
        before, after = figures(recommender.model(train)), figures(served(train))
    result: dict[str, Any] = {}
    for metric, trained in before.items():
        loss = after[metric] - trained if metric == "rmse" else trained - after[metric]
        if loss > SERVED_QUALITY_LOSS:
            raise RuntimeError(
                f"served {recommender.name} loses {loss:.4f} test {metric} to the trained model "
                f"({trained:.4f} -> {after[metric]:.4f}; at most {SERVED_QUALITY_LOSS} allowed)"
            )
        result[metric] = {"trained": round(trained, 6), "served": round(after[metric], 6)}
    return result


def _check_compatible(recommenders: dict) -> None:
    item_ids = {name: list(r.extra.get("item_ids") or []) for name, r in recommenders.items()}
    if any(not ids for ids in item_ids.values()):
        missing = [name for name, ids in item_ids.items() if not ids]
        raise ConfigError(f"checkpoint(s) {missing} carry no item_ids; retrain them")
    if len({tuple(ids) for ids in item_ids.values()}) > 1:
        raise ConfigError("the SAE and RBM checkpoints were trained on different catalogues")


def export_archives(
    checkpoints: dict[str, Path],
    prepared_folder: Path,
    out: Path,
    archives: tuple[str, ...] = ARCHIVES,
    version: str | None = None,
    settings: ServingSettings | None = None,
) -> dict[str, Path]:
    """Build ``out/<name>.mar`` for each archive name; returns name -> archive path.

    An archive's version is ``version`` when given, else its parts' registry versions when the
    checkpoints came from the registry (``from_registry.archive_version``), else DEFAULT_VERSION.
    """
    from model_archiver.model_archiver_config import ModelArchiverConfig
    from model_archiver.model_packaging import generate_model_archive

    from training.data.preprocess import load_prepared
    from training.models import load_checkpoint

    settings = settings or ServingSettings()
    needed = sorted({part for name in archives for part in ARCHIVE_PARTS[name]})
    for part in needed:
        if not Path(checkpoints.get(part, "")).is_file():
            raise FileNotFoundError(
                f"{checkpoints.get(part)}: no {part} checkpoint; train it first"
            )
    recommenders = {part: load_checkpoint(checkpoints[part]) for part in needed}
    _check_compatible(recommenders)
    prepared = load_prepared(prepared_folder)
    if list(prepared.metadata["item_ids"]) != list(recommenders[needed[0]].extra["item_ids"]):
        raise ConfigError(f"{prepared_folder}: its item_ids differ from the checkpoints'")
    example = prepared.train[:EXAMPLE_BATCH]
    out.mkdir(parents=True, exist_ok=True)
    built = {}
    with tempfile.TemporaryDirectory(prefix="movierec-mar-") as tmp:
        staging = Path(tmp)
        quality = {}
        for part, recommender in recommenders.items():
            scripted = script_for_serving(recommender.model, example)
            quality[part] = served_quality(recommender, scripted, prepared.train, prepared.test)
            log.info("served %s: test %s", part, quality[part])
            scripted.save(str(staging / f"{part}.pt"))
        extras = {part: recommender.extra for part, recommender in recommenders.items()}
        versions = {
            name: version or archive_version(ARCHIVE_PARTS[name], extras) or DEFAULT_VERSION
            for name in archives
        }
        artifacts = build_artifacts(
            recommenders, checkpoints, prepared, DEFAULT_VERSION, quality, served=archives
        )
        for module in SHARED_HANDLER_MODULES:
            shutil.copy(handlers_dir() / module, staging / module)
        for name in archives:
            folder = staging / name
            folder.mkdir()
            metadata = {**artifacts[name].metadata, "version": versions[name]}
            artifact = replace(artifacts[name], version=versions[name], metadata=metadata)
            artifact.save(artifact_path(folder))
            (folder / "model-config.yaml").write_text(yaml.safe_dump(settings.model_config()))
            parts = ARCHIVE_PARTS[name]
            extra = [
                *(staging / module for module in SHARED_HANDLER_MODULES),
                artifact_path(folder),
                *(staging / f"{part}.pt" for part in parts[1:]),
            ]
            generate_model_archive(
                ModelArchiverConfig(
                    model_name=name,
                    handler=str(handlers_dir() / HANDLER_FILES[name]),
                    version=versions[name],
                    serialized_file=str(staging / f"{parts[0]}.pt"),
                    extra_files=",".join(str(path) for path in extra),
                    export_path=str(out),
                    config_file=str(folder / "model-config.yaml"),
                    force=True,
                )
            )
            built[name] = out / f"{name}.mar"
            log.info("built %s (%.1f MB)", built[name], built[name].stat().st_size / 1e6)
    return built


def export_torchserve_command(
    models: Annotated[str, typer.Option(help="sae, rbm, hybrid or all.")] = "all",
    from_registry: Annotated[
        bool,
        typer.Option(
            "--from-registry", help="Build from the MLflow registry's champion, not data/."
        ),
    ] = False,
    version: Annotated[
        str | None,
        typer.Option(
            help="With --from-registry: the registry version, N or sae=N,rbm=M (default: the "
            f"champion; archives are versioned after it). Else the archive version "
            f"({DEFAULT_VERSION})."
        ),
    ] = None,
    params: Annotated[Path, typer.Option("--params", help="params.yaml to read.")] = Path(
        "params.yaml"
    ),
    dataset: Annotated[
        str | None, typer.Option(help="Prepared dataset; default: the checkpoints'.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Model store; default model_store/.")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Workers per model.")] = DEFAULTS.workers,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Server-side batch size.")
    ] = DEFAULTS.batch_size,
    max_batch_delay: Annotated[
        int,
        typer.Option(min=0, help="Batch delay (ms); 0 batches only what is already queued."),
    ] = DEFAULTS.max_batch_delay_ms,
) -> None:
    """Build TorchServe archives (.mar) from data/checkpoints/{sae,rbm}.pt, or from the MLflow
    registry's champion (--from-registry)."""
    from training.models import load_checkpoint

    names = ARCHIVES if models == "all" else tuple(models.split(","))
    unknown = [name for name in names if name not in ARCHIVES]
    if unknown:
        raise typer.BadParameter(f"unknown archive(s) {unknown}; choose from {ARCHIVES} or all")
    paths = Paths()
    parts = tuple(sorted({part for name in names for part in ARCHIVE_PARTS[name]}))
    settings = ServingSettings(
        workers=workers, batch_size=batch_size, max_batch_delay_ms=max_batch_delay
    )
    try:
        pinned = parse_versions(version, parts) if from_registry else {}
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    with checkpoint_folder(from_registry, pinned, params, paths.checkpoints, parts) as folder:
        checkpoints = {part: folder / f"{part}.pt" for part in parts}
        first = checkpoints[ARCHIVE_PARTS[names[0]][0]]
        if not first.is_file():
            raise FileNotFoundError(f"{first}: checkpoint not found; run `movierec train` first")
        dataset = dataset or load_checkpoint(first).extra.get("dataset", "ml-100k")
        archive = None if from_registry else version
        built = export_archives(
            checkpoints, paths.prepared(dataset), out or paths.model_store, names, archive, settings
        )
    typer.echo(json.dumps({name: str(path) for name, path in built.items()}))
