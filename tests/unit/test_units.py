"""docker/go-units' HumanDuration, which the daemon's container Status and the CLI share."""

from __future__ import annotations

import pytest

from berth.units import human_duration

H, D = 3600, 86400


@pytest.mark.parametrize(("seconds", "text"), [
    (0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"),
    (119, "About a minute"), (120, "2 minutes"), (3599, "59 minutes"), (H, "About an hour"),
    (1.5 * H, "2 hours"), (2.5 * H, "3 hours"),  # Go's math.Round: half away from zero (Python's round gives 2)
    (47 * H, "47 hours"), (2 * D, "2 days"), (13 * D, "13 days"), (21 * D, "3 weeks"), (59 * D, "8 weeks"),
    (60 * D, "2 months"), (364 * D, "12 months"), (2 * 365 * D, "2 years"),
])
def test_human_duration_is_gos(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text
