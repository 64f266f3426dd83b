"""after_seconds as each entry point takes it: the library's check, the HTTP body, the CLI."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from runqueue import validation
from runqueue.api.schemas import RunCreate
from runqueue.errors import InvalidPayloadError


@pytest.mark.parametrize(
    ("given", "delay"), [(None, None), (0, None), (-3, None), (0.25, 0.25), (90, 90.0)]
)
def test_a_delay_of_zero_or_less_is_none(given, delay):
    assert validation.after_seconds(given) == delay


@pytest.mark.parametrize("given", [True, "5", [1], {"s": 1}, float("nan"), 367 * 24 * 3600])
def test_anything_but_a_number_up_to_a_year_is_refused(given):
    with pytest.raises(InvalidPayloadError, match="after_seconds"):
        validation.after_seconds(given)


@pytest.mark.parametrize("given", [None, True, "1.5", [1]])
def test_the_http_body_takes_a_number_only_as_the_reference(given):
    with pytest.raises(ValidationError):
        RunCreate(assistant_id="agent", after_seconds=given)
    assert RunCreate(assistant_id="agent", after_seconds=2).after_seconds == 2.0
    assert RunCreate(assistant_id="agent").after_seconds == 0
