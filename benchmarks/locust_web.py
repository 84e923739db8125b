"""The web app as people use it: browse, search, rate, get recommendations, give feedback.

    locust -f benchmarks/locust_web.py --host http://127.0.0.1:5000 \\
        --profiles /tmp/profiles.json --headless -u 20 -r 20 -t 60s

Every simulated visitor is one browser (its session cookie is its anonymous user) playing a
test-split user: on arrival they rate a few of that user's movies, then search with words from
real titles, rate the movies that user went on to rate, open their recommendations (the page the
p95 target is about: ``GET /recommendations``), compare the models, press the feedback
buttons of what they were shown and rate some of it (the stars that user gave the film in the
data set, else one of their usual ones: what the served lists' satisfaction figure reads).
htmx requests carry ``HX-Request`` and get partials, as in the browser. A short think time
separates clicks.
"""

from __future__ import annotations

import random
import re

from locust import FastHttpUser, between, task

from benchmarks import locust_common as common
from handlers import contract

THINK_TIME_S = (0.1, 0.5)
SEED_RATINGS = 5  # ratings a visitor gives on arrival, so recommendations are personal
RECOMMENDATION_KS = (10, 10, 10, 20)  # the default page, sometimes "show 10 more"
GENRE_FILTER_SHARE = 0.2
HTMX = {"HX-Request": "true"}
FEEDBACK_KINDS = contract.FEEDBACK_KINDS
MODELS = contract.SERVED_MODELS
MODEL_SWITCH_SHARE = 0.3  # clicks on another model's tab instead of the A/B arm's default
# The feedback form of every recommended movie: its id and the panel's model.
SHOWN = re.compile(rb'name="movie_id" value="(\d+)">\s*<input type="hidden" name="model" '
                   rb'value="(\w+)"')  # fmt: skip


class WebVisitor(FastHttpUser):
    wait_time = between(*THINK_TIME_S)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.data = common.profiles(self.environment)
        self.profile = self.rng.choice(self.data.users)
        self.to_rate = list({**self.profile["ratings"], **self.profile["held_out"]}.items())
        self.rng.shuffle(self.to_rate)
        self.shown: list[tuple[int, str]] = []
        self.client.get("/", name="/")
        for _ in range(SEED_RATINGS):
            self.rate()
        common.arrived(self.environment)

    def _check(self, response, expected: bytes | None = None) -> None:
        if response.status_code != 200:
            response.failure(common.describe_failure(response))
        elif expected is not None and expected not in (response.content or b""):
            response.failure(f"page without {expected.decode()!r}")

    @task(3)
    def browse(self) -> None:
        self.client.get("/", name="/")

    @task(1)
    def profile_page(self) -> None:
        self.client.get("/profile", name="/profile")

    @task(4)
    def search(self) -> None:
        params = {"q": self.rng.choice(self.data.search_terms)}
        if self.rng.random() < GENRE_FILTER_SHARE:
            params["genre"] = self.rng.choice(self.data.genres)
        with self.client.get(
            "/search", params=params, headers=HTMX, name="/search", catch_response=True
        ) as response:
            self._check(response, b'id="search-results"')

    @task(2)
    def rate(self) -> None:
        if not self.to_rate:
            return
        movie, stars = self.to_rate.pop()
        with self.client.post(
            "/ratings", data={"movie_id": movie, "rating": stars}, headers=HTMX,
            name="/ratings", catch_response=True,
        ) as response:  # fmt: skip
            self._check(response)

    @task(5)
    def recommendations(self) -> None:
        params = {"k": self.rng.choice(RECOMMENDATION_KS)}
        if self.rng.random() < MODEL_SWITCH_SHARE:
            params["model"] = self.rng.choice(MODELS)
        with self.client.get(
            "/recommendations", params=params, name="/recommendations", catch_response=True
        ) as response:
            self._check(response)
            shown = SHOWN.findall(response.content or b"")
            if response.status_code == 200 and not shown:
                response.failure("no recommendations on the page (model server down?)")
            self.shown = [(int(movie), model.decode()) for movie, model in shown]

    @task(1)
    def compare(self) -> None:
        with self.client.get("/compare", name="/compare", catch_response=True) as response:
            self._check(response, b'data-model="hybrid"')

    @task(1)
    def rate_recommended(self) -> None:
        known = {**self.profile["ratings"], **self.profile["held_out"]}
        if not self.shown or not known:
            return
        movie, _model = self.shown.pop(self.rng.randrange(len(self.shown)))
        stars = known.get(str(movie)) or self.rng.choice(list(known.values()))
        with self.client.post(
            "/ratings", data={"movie_id": movie, "rating": stars}, headers=HTMX,
            name="/ratings (recommended)", catch_response=True,
        ) as response:  # fmt: skip
            self._check(response)

    @task(2)
    def feedback(self) -> None:
        if not self.shown:
            return
        movie, model = self.rng.choice(self.shown)
        form = {"movie_id": movie, "model": model, "kind": self.rng.choice(FEEDBACK_KINDS)}
        with self.client.post(
            "/feedback", data=form, headers=HTMX, name="/feedback", catch_response=True
        ) as response:
            self._check(response)
