"""What every locustfile here shares: the profiles file, request bodies, the run record.

Imported by the locustfiles only, as ``benchmarks.locust_common`` (Locust puts its working
directory on ``sys.path``: run it from the repository root); it needs no torch.

* ``--profiles`` (or ``$MOVIEREC_LOAD_PROFILES``): the JSON ``benchmarks/profiles.py`` writes.
* ``RunRecord``: Locust rounds response times below 100 ms to whole milliseconds (its CSV
  writes percentiles as integers), too coarse for 1-2 ms targets, and its CSVs are refreshed
  once a second, missing a run's last moments. Every request is also counted here (10 us
  histogram, failures with messages) and written at exit to ``<csv prefix>_record_<pid>.json``:
  one file per Locust process, so ``--processes`` and distributed workers merge exactly.
* ``timed_request``: how custom (gRPC) users report to ``events.request``.
"""

from __future__ import annotations

import gc
import json
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from locust import events
from locust.runners import MasterRunner

from handlers import contract

PROFILES_ENV = "MOVIEREC_LOAD_PROFILES"
# Ranked lists people ask for: mostly a page of 10, sometimes a short strip or a long list.
K_CHOICES = (5, 10, 20, 50)
K_WEIGHTS = (2, 6, 2, 1)
EXPLAIN_SHARE = 0.5  # explanations cost the handler extra work: half the calls ask for them
HYBRID_SAE_WEIGHTS = (0.3, 0.5, 0.7)
BATCH_USERS = 4  # users per batch call
BODIES_PER_KIND = 300  # pre-encoded bodies, so the load generator spends its CPU on sending
BUCKETS_PER_MS = 100  # 10 us resolution
AGGREGATED = "Aggregated"
RECORD_SUFFIX = "_record_"
ERROR_CHARS = 300  # of a failure message kept
USER_ERROR = "exception in"  # names the errors of task code (not of a request)


@events.init_command_line_parser.add_listener
def _add_arguments(parser) -> None:
    parser.add_argument(
        "--profiles",
        default=os.environ.get(PROFILES_ENV, ""),
        help="JSON written by benchmarks/profiles.py (default $MOVIEREC_LOAD_PROFILES)",
    )
    parser.add_argument(
        "--record",
        default="",
        help="Path prefix of the run record (default: --csv's; workers have no --csv)",
    )
    parser.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="Pause between a model-server client's calls (0: back to back, the stress figure)",
    )


def think_time(user) -> float:
    """``wait_time`` of the model-server users: ``--think-ms`` between calls."""
    return user.environment.parsed_options.think_ms / 1000.0


@dataclass(frozen=True)
class Profiles:
    item_ids: list[int]
    users: list[dict[str, Any]]  # {"user_id", "ratings": {movie: stars}, "held_out": {...}}
    search_terms: list[str]
    genres: list[str]

    @classmethod
    def read(cls, path: str | Path) -> Profiles:
        if not path:
            raise FileNotFoundError(
                f"no profiles file: pass --profiles or set {PROFILES_ENV} "
                "(benchmarks/profiles.py writes one)"
            )
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not data.get("profiles"):
            raise ValueError(f"{path}: holds no profiles")
        return cls(data["item_ids"], data["profiles"], data["search_terms"], data["genres"])


@cache
def profiles_from(path: str) -> Profiles:
    return Profiles.read(path)


def profiles(environment) -> Profiles:
    """The profiles this Locust process was given (read once per process)."""
    return profiles_from(environment.parsed_options.profiles)


@events.test_start.add_listener
def _freeze_start_up_objects(environment, **_kwargs) -> None:
    """Read the profiles, then take everything this process holds out of the cyclic GC.

    A full collection over Locust and the profiles (~200k objects) stops every greenlet for
    ~90 ms, and the requests in flight would report that pause as the server's latency.
    """
    if not isinstance(environment.runner, MasterRunner):  # the master sends no requests
        profiles(environment)
    gc.freeze()


def random_k(rng: random.Random) -> int:
    return rng.choices(K_CHOICES, K_WEIGHTS)[0]


def user_body(profile: dict, rng: random.Random) -> dict[str, Any]:
    """One TorchServe request for a user: their ratings, a k, explanations or not."""
    return {
        "ratings": profile["ratings"],
        "k": random_k(rng),
        "explain": rng.random() < EXPLAIN_SHARE,
    }


def hybrid_weights(rng: random.Random) -> dict[str, float]:
    sae = rng.choice(HYBRID_SAE_WEIGHTS)
    return {contract.SAE: sae, contract.RBM: round(1.0 - sae, 3)}


def batch_body(users: list[dict], rng: random.Random) -> dict[str, Any]:
    return {"users": [{"ratings": u["ratings"]} for u in users], "k": random_k(rng)}


@dataclass(frozen=True)
class Payloads:
    """Pre-encoded JSON bodies by kind: single (sae/rbm), hybrid, batch."""

    single: list[bytes]
    hybrid: list[bytes]
    batch: list[bytes]


def _call(model: str, kind: str, name: str, batch: bool = False):
    def run(user) -> None:
        user.predict(model, user.rng.choice(getattr(user.bodies, kind)), name, batch=batch)

    run.__name__ = name.replace(" ", "_")
    return run


# The TorchServe request mix of both the HTTP and the gRPC scenario (task -> weight): the SAE
# most, then the RBM and the hybrid, and a few bodies of several users. Each user class
# supplies ``predict(model, body, name, batch=False)``.
TORCHSERVE_MIX = {
    _call(contract.SAE, "single", contract.SAE): 6,
    _call(contract.RBM, "single", contract.RBM): 2,
    _call(contract.HYBRID, "hybrid", contract.HYBRID): 2,
    _call(contract.SAE, "batch", f"{contract.SAE} batch", batch=True): 1,
}


@cache
def payloads_from(path: str, seed: int = 0) -> Payloads:
    data = profiles_from(path)
    rng = random.Random(seed)

    def encode(body: dict) -> bytes:
        return json.dumps(body, separators=(",", ":")).encode("utf-8")

    users = [rng.choice(data.users) for _ in range(BODIES_PER_KIND)]
    return Payloads(
        single=[encode(user_body(u, rng)) for u in users],
        hybrid=[encode({**user_body(u, rng), "weights": hybrid_weights(rng)}) for u in users],
        batch=[
            encode(batch_body(rng.sample(data.users, BATCH_USERS), rng))
            for _ in range(BODIES_PER_KIND)
        ],
    )


def payloads(environment) -> Payloads:
    return payloads_from(environment.parsed_options.profiles)


def describe_failure(response) -> str:
    """What went wrong with an HTTP answer: its status and body, or the connection error."""
    if not response.status_code:
        return f"no answer: {response.error!r}"[:ERROR_CHARS]
    return f"HTTP {response.status_code}: {(response.text or '')[:ERROR_CHARS]}"


# -- custom clients ------------------------------------------------------------------------------
@contextmanager
def timed_request(environment, request_type: str, name: str) -> Iterator[dict]:
    """Time the block and fire ``events.request``; an Exception raised inside is the failure
    (swallowed, as Locust's own clients do). Put ``response_length`` into the yielded dict."""
    meta: dict[str, Any] = {"response_length": 0}
    started = time.perf_counter()
    exception = None
    try:
        yield meta
    except Exception as exc:  # noqa: BLE001 - every failure is reported to Locust, not raised
        exception = exc
    environment.events.request.fire(
        request_type=request_type,
        name=name,
        response_time=(time.perf_counter() - started) * 1000.0,
        response_length=meta["response_length"],
        exception=exception,
        context={},
    )


# -- the run record ------------------------------------------------------------------------------
class RunRecord:
    """Per request name: counts, failures (with messages), first/last time, 10 us histogram.

    Written at exit, after the users have stopped, so it holds every request (Locust's CSVs
    are refreshed once a second and miss the last moments of a run).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.names: dict[str, dict[str, Any]] = {}
        self.errors: Counter = Counter()

    def record(self, request_type: str, name: str, response_time: float, exception, **_) -> None:
        now = time.time()
        key = f"{request_type} {name}"
        for entry_key in (key, AGGREGATED):
            entry = self.names.get(entry_key)
            if entry is None:
                entry = {"requests": 0, "failures": 0, "first": now, "histogram": Counter()}
                self.names[entry_key] = entry
            entry["requests"] += 1
            entry["last"] = now
            if exception is not None:
                entry["failures"] += 1
            elif response_time is not None:
                entry["histogram"][round(response_time * BUCKETS_PER_MS)] += 1
        if exception is not None:
            self.errors[(key, str(exception)[:ERROR_CHARS])] += 1

    def user_error(self, user_instance, exception, tb, **_) -> None:
        """A bug in a locustfile's task: Locust logs it and goes on; the report must not."""
        message = f"{type(exception).__name__}: {exception}"[:ERROR_CHARS]
        self.errors[(f"{USER_ERROR} {type(user_instance).__name__}", message)] += 1

    def write(self, environment) -> Path | None:
        options = environment.parsed_options
        prefix = options.record or getattr(options, "csv_prefix", None)
        if not prefix or not self.names:
            return None
        path = Path(f"{prefix}{RECORD_SUFFIX}{os.getpid()}.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "buckets_per_ms": BUCKETS_PER_MS,
            "names": {
                name: {**entry, "histogram": {str(b): n for b, n in entry["histogram"].items()}}
                for name, entry in self.names.items()
            },
            "errors": [[name, message, n] for (name, message), n in self.errors.items()],
        }
        path.write_text(json.dumps(data), encoding="utf-8")
        return path


_record = RunRecord()
events.request.add_listener(_record.record)
events.user_error.add_listener(_record.user_error)
events.reset_stats.add_listener(_record.reset)  # the web UI's reset button


_arrivals = Counter()


def arrived(environment) -> None:
    """Call at the end of a user's ``on_start``. Under ``--reset-stats`` the figures restart
    once every user of this process has arrived: all users spawn at once, so their on_start
    requests (a visitor's first page and seed ratings) come as one burst that measures the
    ramp-up, not the steady state."""
    _arrivals["users"] += 1
    runner = environment.runner
    if environment.reset_stats and _arrivals["users"] == runner.target_user_count:
        environment.stats.reset_all()
        _record.reset()


@events.init.add_listener
def _write_record_at_exit(environment, **_) -> None:
    def reset_after_ramp_up(user_count: int, **_) -> None:
        # --reset-stats: Locust drops the ramp-up from its figures here; so do we.
        if environment.reset_stats:
            _record.reset()

    def write(**_) -> None:
        _record.write(environment)

    environment.events.spawning_complete.add_listener(reset_after_ramp_up)
    # `quit` comes after the users have stopped (`quitting` comes before, mid-request).
    environment.events.quit.add_listener(write)
