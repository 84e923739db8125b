"""The loopback round trip (``benchmarks/loopback_baseline.py``): the report's machine gauge."""

from __future__ import annotations

import math

import psutil
import pytest

from benchmarks import loopback_baseline

TRIPS = 500
# A round trip on loopback takes tens of microseconds; a figure outside this range is a unit or
# timing mistake, not a slow machine.
PLAUSIBLE_US = (1.0, 100_000.0)


def test_round_trip_gives_ordered_plausible_percentiles():
    trip = loopback_baseline.measure_round_trip(TRIPS)
    assert trip.trips == TRIPS
    assert math.isfinite(trip.p50_us) and math.isfinite(trip.p90_us)
    assert PLAUSIBLE_US[0] < trip.p50_us <= trip.p90_us < PLAUSIBLE_US[1]


def test_the_echo_process_is_gone_afterwards():
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    loopback_baseline.measure_round_trip(TRIPS)
    after = {p.pid for p in psutil.Process().children(recursive=True)}
    assert after <= before


@pytest.mark.parametrize("trips", [1, 0, -3])
def test_a_count_below_two_is_refused(trips):
    with pytest.raises(ValueError, match="trips must be positive"):
        loopback_baseline.measure_round_trip(trips)
