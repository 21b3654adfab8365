"""Id generation: 53-bit, time-ordered, unique, and the time is inside the id."""

from __future__ import annotations

from realtime.ids import EPOCH_MS, IdGenerator, id_to_ms, min_id_at


class FakeClock:
    def __init__(self, seconds: float) -> None:
        self.now = seconds

    def __call__(self) -> float:
        return self.now


def test_ids_are_increasing_and_unique_within_one_millisecond():
    clock = FakeClock(1_800_000_000.0)
    ids = IdGenerator(5, clock=clock)
    minted = [ids.next_id() for _ in range(10_000)]  # far more than 32 per ms: borrows later ms
    assert minted == sorted(minted)
    assert len(set(minted)) == len(minted)


def test_the_minting_time_is_recoverable_from_the_id():
    clock = FakeClock(1_800_000_000.123)
    tweet_id = IdGenerator(3, clock=clock).next_id()
    assert id_to_ms(tweet_id) == 1_800_000_000_123


def test_a_clock_that_goes_back_never_repeats_or_lowers_an_id():
    clock = FakeClock(1_800_000_000.0)
    ids = IdGenerator(1, clock=clock)
    first = ids.next_id()
    clock.now -= 5  # NTP step backwards
    second = ids.next_id()
    assert second > first


def test_two_workers_never_mint_the_same_id_in_the_same_millisecond():
    clock = FakeClock(1_800_000_000.0)
    a, b = IdGenerator(1, clock=clock), IdGenerator(2, clock=clock)
    minted_a = {a.next_id() for _ in range(32)}
    minted_b = {b.next_id() for _ in range(32)}
    assert not minted_a & minted_b


def test_ids_stay_below_2_to_the_53_until_2093():
    late = FakeClock((EPOCH_MS + (1 << 41) - 1) / 1000)
    assert IdGenerator(127, clock=late).next_id() < 1 << 53


def test_min_id_at_bounds_every_id_minted_at_or_after_that_time():
    clock = FakeClock(1_800_000_000.5)
    tweet_id = IdGenerator(0, clock=clock).next_id()
    assert min_id_at(1_800_000_000_500) <= tweet_id < min_id_at(1_800_000_000_501)
