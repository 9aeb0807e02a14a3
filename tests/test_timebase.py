"""The one home of time conversions and of a recording's time column (`shared.timebase`)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import ContractError
from shared.timebase import (
    NS_PER_S,
    datetime_to_ns,
    iso_time,
    ns_to_datetime,
    parse_time_ns,
    parse_times_ns,
)

T0_NS = 1_790_000_000 * NS_PER_S  # 2026-09-21T14:13:20Z

CASES = [
    ("2026-09-21T14:13:20Z", T0_NS),
    ("2026-09-21T14:13:20.000000001Z", T0_NS + 1),
    ("2026-09-21T14:13:20.123456789Z", T0_NS + 123_456_789),
    ("2026-09-21T15:13:20+01:00", T0_NS),
    ("1790000000", T0_NS),
    ("1790000000.25", T0_NS + NS_PER_S // 4),
    ("1790000000.000000001", T0_NS + 1),
    ("1790000000.999999999", T0_NS + 999_999_999),
    (str(T0_NS), T0_NS),
    (str(T0_NS + 7), T0_NS + 7),
    ("1.79e9", T0_NS),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_each_time_form_parses_exactly(text: str, expected: int) -> None:
    assert parse_time_ns(text) == expected


@pytest.mark.parametrize("text", ["", "noon", "2026-09-21T14:13:20", "nan", "inf", "99999999999999.5"])
def test_unparsable_time_names_the_time_field(text: str) -> None:
    with pytest.raises(ContractError) as info:
        parse_time_ns(text)
    assert info.value.field == "time"


@pytest.mark.parametrize(
    "column",
    [
        [text for text, _ in CASES if text.endswith("Z")],
        ["1790000000.000000001", "1790000000.5", "1790000000"],
        [str(T0_NS), str(T0_NS + 1), "1790000000.000000003"],
        [text for text, _ in CASES],
    ],
)
def test_a_column_parses_as_its_cells_do(column: list[str]) -> None:
    times, good = parse_times_ns(column)
    assert good.all()
    assert times.tolist() == [parse_time_ns(text) for text in column]


def test_a_column_marks_the_cells_that_do_not_parse() -> None:
    times, good = parse_times_ns(["1790000000.5", "noon", str(T0_NS)])
    assert good.tolist() == [True, False, True]
    assert times[[0, 2]].tolist() == [T0_NS + NS_PER_S // 2, T0_NS]


@given(st.integers(min_value=0, max_value=4_000_000_000 * NS_PER_S))
def test_epoch_seconds_with_nine_decimals_and_epoch_ns_round_trip(ts_ns: int) -> None:
    seconds, fraction = divmod(ts_ns, NS_PER_S)
    texts = [f"{seconds}.{fraction:09d}", iso_time(ts_ns)]
    times, good = parse_times_ns(texts[:1])
    assert good.all()
    assert int(times[0]) == ts_ns == parse_time_ns(texts[0])
    assert parse_time_ns(texts[1]) == ts_ns // 1000 * 1000  # ISO text keeps microseconds


@given(st.integers(min_value=-(10**18), max_value=4 * 10**18))
def test_datetime_round_trip_keeps_microseconds(ts_ns: int) -> None:
    moment = ns_to_datetime(ts_ns)
    assert moment.tzinfo is not None
    assert datetime_to_ns(moment) == ts_ns // 1000 * 1000


def test_datetime_to_ns_is_exact_and_refuses_naive_times() -> None:
    moment = dt.datetime(2026, 9, 21, 16, 13, 20, 1, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert datetime_to_ns(moment) == T0_NS + 1000
    with pytest.raises(ValueError, match="no time zone"):
        datetime_to_ns(dt.datetime(2026, 9, 21))  # noqa: DTZ001 - the naive datetime under test
