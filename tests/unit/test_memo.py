"""app.memo: pure functions of a string memoized, but never keeping a long argument (one a
request can size), so no request can make a worker hold more than a few small entries."""
from __future__ import annotations

import datetime as dt

import pytest

from app.domains.names import email_domain
from app.emails import InvalidEmail, normalize_address
from app.memo import memoized
from app.sso.checks import parse_time


def test_short_arguments_are_kept_and_long_ones_computed_each_time():
    calls = []

    @memoized(max_length=8, maxsize=4)
    def upper(text):
        calls.append(text)
        return text.upper()

    assert upper("abc") == upper("abc") == "ABC" and calls == ["abc"]
    long = "x" * 9
    assert upper(long) == upper(long) == long.upper()
    assert calls == ["abc", long, long] and upper.cache_info().currsize == 1


@pytest.mark.parametrize("function, argument, expected", [
    (normalize_address, " " * 1_000_000 + "ada@example.com", "ada@example.com"),
    (normalize_address, "ada@" + "a" * 1_000_000 + ".example", InvalidEmail),
    (email_domain, "ada@" + "a" * 1_000_000 + ".example", "a" * 1_000_000 + ".example"),
    # XSD dateTime allows any number of fraction digits; a forged, unsigned IssueInstant is parsed.
    (parse_time, "2020-01-01T00:00:00." + "1" * 200_000 + "Z", dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)),
])
def test_what_requests_reach_is_answered_but_not_kept_when_long(function, argument, expected):
    function.cache_clear()
    if expected is InvalidEmail:
        with pytest.raises(InvalidEmail):
            function(argument)
    else:
        assert function(argument) == expected
    assert function.cache_info().currsize == 0
    function("ada@example.com" if function is not parse_time else "2020-01-01T00:00:00Z")
    assert function.cache_info().currsize == 1
