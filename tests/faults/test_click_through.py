"""Click-through end to end: real clicks (positive feedback, docs/decisions/0011) through the real
web app under gunicorn with 2 workers, pages (htmx and plain forms) and the JSON API; a real
Prometheus scrapes ``/metrics`` and evaluates the project's rules, hours scaled to seconds.

Phase A shows recommendations and gets clicks on half of them; once phase A is older than the
scaled hour, phase B shows over 100 recommendations to the same visitor with one click, so the
last "hour" is far below half of the "day" before it: ClickThroughDrop's expression holds for
that model and arm, and Prometheus raises the alert.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from handlers import contract
from tests.fixtures.alertmanager import RULES, scaled_rules, start_prometheus
from tests.fixtures.web import TEST_API_KEY

pytestmark = pytest.mark.slow

FACTOR = 120  # 1h -> 30 s, 1d -> 12 min; the alert's for: 30m -> 15 s
WINDOW_S = 3600 / FACTOR
TIMEOUT_S = 30
ALERT_TIMEOUT_S = 25  # within the scaled hour phase B stays in
K = 10
PHASE_B_K = 20
PHASE_B_PAGES = 6  # 120 recommendations: over the alert's 100
RATINGS = {"1": 5, "50": 4, "181": 5, "100": 3, "258": 4}
HTMX = {"HX-Request": "true"}
# A new connection for every request, so both gunicorn workers serve (and count) some.
CLOSE = {"Connection": "close"}
_MOVIE = re.compile(r'data-movie-id="(\d+)"')
_PANEL = re.compile(r'<article class="panel" id="panel-(\w+)"')

Key = tuple[str, str]  # (model_type, arm)


def rule(name: str, rules: dict) -> str:
    return next(r["expr"] for g in rules["groups"] for r in g["rules"] if name in r.values())


def by_key(result: list[dict]) -> dict[Key, float]:
    return {
        (row["metric"]["model_type"], row["metric"]["arm"]): float(row["value"][1])
        for row in result
    }


class Visitor:
    """A browser-like session on the pages: its model is its A/B arm (no ?model=)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers.update(CLOSE)

    def recommendations(self, k: int, htmx: bool) -> tuple[str, list[int]]:
        answer = self.session.get(
            f"{self.base}/recommendations", params={"k": k}, headers=HTMX if htmx else {},
            timeout=TIMEOUT_S,
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        (model,) = _PANEL.findall(answer.text)
        movies = [int(movie) for movie in _MOVIE.findall(answer.text)]
        assert len(movies) == k
        return model, movies

    def feedback(self, model: str, movie: int, kind: str, htmx: bool) -> None:
        form = {"movie_id": movie, "model": model, "kind": kind}
        answer = self.session.post(
            f"{self.base}/feedback", data=form, headers=HTMX if htmx else {},
            allow_redirects=False, timeout=TIMEOUT_S,
        )  # fmt: skip
        if htmx:  # the form's fragment is swapped for the thanks
            assert answer.status_code == 200 and f'data-kind="{kind}"' in answer.text
        else:  # a plain form post (no JavaScript) is redirected back
            assert answer.status_code == 303, answer.text


def api_clicks(base: str, clicks: Counter, shown: Counter) -> None:
    """One API user: the hybrid's recommendations (never an arm's default model, so its key
    differs from the page visitor's), then feedback on them."""
    token = requests.post(f"{base}/api/v1/token", json={"api_key": TEST_API_KEY},
                          headers=CLOSE, timeout=TIMEOUT_S).json()["access_token"]  # fmt: skip
    headers = {**CLOSE, "Authorization": f"Bearer {token}"}
    body = {"ratings": RATINGS, "k": K, "user_id": "reader"}
    answer = requests.post(f"{base}/api/v1/recommend/{contract.HYBRID}", json=body, headers=headers,
                           timeout=TIMEOUT_S)  # fmt: skip
    assert answer.status_code == 200, answer.text
    key = (answer.json()["model"], answer.json()["arm"])
    shown[key] += K
    movies = [item["movie_id"] for item in answer.json()["recommendations"]]
    for movie, kind in zip(movies, ["watched", "up", "up", "down"], strict=False):
        sent = {"user_id": "reader", "movie_id": movie, "model": key[0], "kind": kind}
        stored = requests.post(f"{base}/api/v1/feedback", json=sent, headers=headers,
                               timeout=TIMEOUT_S)  # fmt: skip
        assert stored.status_code == 201, stored.text
        clicks[key] += kind in contract.CLICK_KINDS


def test_clicks_are_counted_across_workers_and_a_drop_raises_the_alert(
    gunicorn_web_factory, tmp_path
):
    base = gunicorn_web_factory()
    clicks: Counter = Counter()
    shown: Counter = Counter()
    with start_prometheus(tmp_path / "prometheus", {"web": urlsplit(base).netloc}, FACTOR) as prom:
        prom.poll_query('up{job="web"} == 1', bool, TIMEOUT_S)  # the zero series are scraped

        # Phase A: half of what the pages show is clicked (htmx and plain forms), plus "down".
        visitor = Visitor(base)
        for htmx in (True, False):
            model, movies = visitor.recommendations(K, htmx)
            shown[(model, model)] += K
            for index, movie in enumerate(movies[: K // 2]):
                kind = contract.CLICK_KINDS[index % len(contract.CLICK_KINDS)]
                visitor.feedback(model, movie, kind, htmx)
                clicks[(model, model)] += 1
            visitor.feedback(model, movies[-1], "down", htmx)  # feedback, not a click
        api_clicks(base, clicks, shown)
        phase_a_done = time.time()

        # Every worker's counts arrive summed; the recorded ratio (the real rule) is theirs.
        ratio_expr = rule("model_arm:recommendation_click_through:ratio_1h", yaml.safe_load(
            RULES.read_text(encoding="utf-8")))  # fmt: skip
        expected_clicks = {key: float(n) for key, n in clicks.items()}
        counted = prom.poll_query(
            "sum by (model_type, arm) (recommendation_clicks_total) > 0",
            lambda rows: by_key(rows) == expected_clicks,
            TIMEOUT_S,
        )
        assert by_key(counted) == expected_clicks
        impressions = by_key(
            prom.query("sum by (model_type, arm) (recommendation_impressions_total)")
        )
        assert {key: impressions[key] for key in shown} == {k: float(n) for k, n in shown.items()}
        ratios = by_key(prom.query(ratio_expr))
        for key in shown:
            assert ratios[key] == pytest.approx(clicks[key] / shown[key], rel=1e-9), key

        # Phase B, once phase A has left the scaled hour: many impressions, one click.
        time.sleep(max(0.0, phase_a_done + WINDOW_S + 1 - time.time()))
        for _ in range(PHASE_B_PAGES):
            model, movies = visitor.recommendations(PHASE_B_K, htmx=True)
        visitor.feedback(model, movies[0], "up", htmx=True)
        dropped = {(model, model)}
        api_key = next(key for key in shown if key != (model, model))

        alert_expr = rule("ClickThroughDrop", scaled_rules(FACTOR))
        holding = prom.poll_query(alert_expr, lambda rows: set(by_key(rows)) == dropped,
                                  ALERT_TIMEOUT_S)  # fmt: skip
        assert set(by_key(holding)) == dropped, holding  # not the API user's arm: no new traffic
        raised = prom.poll_query(
            'ALERTS{alertname="ClickThroughDrop"}', lambda rows: bool(rows), ALERT_TIMEOUT_S
        )
        assert set(by_key(raised)) == dropped and api_key not in by_key(raised)
