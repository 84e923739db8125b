"""Recommendations (one model, switchable, "more"), the side-by-side comparison, feedback and
the A/B experiment page."""

from __future__ import annotations

from flask import Blueprint, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from web import db
from web.analytics import COMPARE_METRICS, compare_figures, load_offline_report, offline_table
from web.config import MODEL_NAMES
from web.experiment import arm_stats, assign, canary_stats, current_release, pinned_versions
from web.htmx import is_htmx
from web.profiles import ratings_of
from web.services import services
from web.validation import DEFAULT_K, FEEDBACK_KINDS, MAX_K, InvalidInput, check_movies, form_int
from web.views.identity import current_user
from web.views.serving import fetch_panels, record_panels, store_feedback

bp = Blueprint("recommendations", __name__)

# "More" asks for this many extra recommendations each time.
MORE_STEP = 10


def _k_arg() -> int:
    text = request.args.get("k", "")
    return form_int(text, "k", 1, MAX_K) if text else DEFAULT_K


def _model_arg(default: str) -> str:
    model = request.args.get("model", default)
    if model not in MODEL_NAMES:
        raise InvalidInput([("model", f"unknown model {model!r}; choose one of {MODEL_NAMES}")])
    return model


def _user_state() -> tuple:
    """(user, arm, ratings), looked up once per request however many helpers ask."""
    if "user_state" not in g:
        user = current_user()
        database = db.get_session()
        settings = services().settings
        arm = assign(database, user, settings.ab_experiment, settings.ab_arms)
        g.user_state = (user, arm, ratings_of(database, user.id))
    return g.user_state


def _panels_context(models: list[str], k: int, endpoint: str) -> dict:
    user, arm, ratings = _user_state()
    versions = pinned_versions(db.get_session(), user, current_release(services().settings))
    panels = fetch_panels(
        services(), user.external_id, models, ratings, k, g.request_id, endpoint, versions=versions
    )
    record_panels(user.id, arm, panels, g.request_id, endpoint)
    return {
        "panels": panels,
        "arm": arm,
        "ratings": ratings,
        "catalog": services().catalog,
        "k": k,
        "more_step": MORE_STEP,
        "max_k": MAX_K,
        "models": MODEL_NAMES,
    }


@bp.get("/recommendations")
def recommendations() -> str:
    """The user's A/B arm decides the default model; ``?model=`` switches, ``?k=`` asks more."""
    _, arm, _ = _user_state()
    model = _model_arg(arm)
    context = _panels_context([model], _k_arg(), "recommendations")
    if is_htmx():
        return render_template("partials/rec_section.html", model=model, **context)
    return render_template("recommendations.html", model=model, **context)


@bp.get("/compare")
def compare() -> str:
    context = _panels_context(list(MODEL_NAMES), _k_arg(), "compare")
    if is_htmx():
        return render_template("partials/compare_panels.html", **context)
    table = offline_table(load_offline_report(services().settings.evaluation_report))
    offline = compare_figures(table, MODEL_NAMES)
    metrics = [m for m in COMPARE_METRICS if any(m in figures for figures in offline.values())]
    return render_template(
        "model_compare.html", offline=offline, offline_metrics=metrics, **context
    )


@bp.post("/feedback")
def feedback() -> ResponseReturnValue:
    movie_id = form_int(request.form.get("movie_id"), "movie_id", 1, 10**9)
    check_movies(services().catalog, [movie_id], "movie_id")
    model = request.form.get("model", "")
    kind = request.form.get("kind", "")
    errors = []
    if model not in MODEL_NAMES:
        errors.append(("model", f"unknown model {model!r}; choose one of {MODEL_NAMES}"))
    if kind not in FEEDBACK_KINDS:
        errors.append(("kind", f"unknown feedback {kind!r}; choose one of {FEEDBACK_KINDS}"))
    if errors:
        raise InvalidInput(errors)
    user, arm, _ = _user_state()
    store_feedback(db.get_session(), user.id, model, arm, movie_id, kind)
    if not is_htmx():
        return redirect(request.referrer or url_for("recommendations.recommendations"), code=303)
    return render_template("partials/feedback_done.html", kind=kind, movie_id=movie_id, model=model)


@bp.get("/experiment")
def experiment() -> str:
    settings = services().settings
    stats = arm_stats(db.get_session(), settings.ab_experiment, settings.ab_arms)
    release = current_release(settings)
    canary = canary_stats(db.get_session(), release) if release is not None else None
    template = "partials/experiment_table.html" if is_htmx() else "experiment.html"
    return render_template(
        template, stats=stats, experiment=settings.ab_experiment, release=release, canary=canary
    )
