"""timestamp_out agrees with protobuf's own FromDatetime for every datetime a service may hand it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from google.protobuf import timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

from service_runtime.wire import timestamp_in, timestamp_out

ZONES = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11)), None])


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)), ZONES)
def test_timestamp_out_is_what_protobuf_makes(moment: datetime, zone: timezone | None) -> None:
    moment = moment.replace(tzinfo=zone)
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(moment)

    assert timestamp_out(moment) == expected


def test_timestamp_out_round_trips_around_the_epoch() -> None:
    for moment in (
        datetime(1970, 1, 1, tzinfo=UTC) - timedelta(microseconds=1),
        datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2026, 12, 1, 10, 41, 13, 123_456, tzinfo=UTC),
    ):
        stamp = timestamp_out(moment)
        assert stamp is not None and 0 <= stamp.nanos < 1_000_000_000
        assert timestamp_in(stamp) == moment
    assert timestamp_out(None) is None
