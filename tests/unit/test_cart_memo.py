from hypothesis import given
from hypothesis import strategies as st

from cart_svc.memo import Memo


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 40)), max_size=300), st.integers(1, 100))
def test_the_memo_never_weighs_more_than_its_capacity_and_remembers_the_last_put(puts, capacity):
    memo: Memo[int, int] = Memo(capacity, weigh=lambda lines: 1 + lines)
    for key, lines in puts:
        memo.put(key, lines)
        # an entry heavier than the capacity is kept alone (the memo is never emptied by a put)
        assert memo.weight <= capacity or len(memo) == 1
        kept = [lines for k in {k for k, _ in puts} if (lines := memo.get(k)) is not None]
        assert memo.weight == sum(1 + lines for lines in kept)
    if puts:
        key, lines = puts[-1]
        assert memo.get(key) == lines


def test_the_entries_put_longest_ago_go_first():
    memo: Memo[str, int] = Memo(3)
    for key in "abc":
        memo.put(key, 0)
    memo.put("a", 1)  # replaced: now the newest
    memo.put("d", 0)
    assert memo.get("b") is None
    assert [memo.get(k) for k in "acd"] == [1, 0, 0]
