"""A bounded memo: what the cart computed from a cart or a line, remembered while its inputs are unchanged.

Bounded by weight, not by entries: a cart's entry weighs its lines, so the bound holds the memory a memo can
keep whatever the carts look like (5,000 carts of 100 lines each were ~530 MB across the cart's three
per-cart memos, twice a pod's memory limit). Full, the store's and the servicer's memos hold 31 MiB of
100-line carts and 38 MiB of one-line carts (tracemalloc: tests/unit/test_cart_memory.py). The entries put
longest ago go first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


#: The lines a per-cart memo holds at most (each cart's entry weighs 1 + its lines).
CART_LINES = 20_000
#: The entries a per-line memo holds at most (a few hundred bytes each).
LINES = 20_000


def one(_value: object) -> int:
    return 1


class Memo(Generic[K, V]):
    __slots__ = ("_capacity", "_entries", "_weigh", "_weight")

    def __init__(self, capacity: int, weigh: Callable[[V], int] = one) -> None:
        if capacity < 1:
            raise ValueError("a memo holds at least one entry")
        self._capacity = capacity
        self._weigh = weigh
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._weight = 0

    def get(self, key: K) -> V | None:
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        """Remembers `value` as the newest entry; forgets the oldest ones while the memo weighs more than
        its capacity (never the newest: one entry heavier than the capacity is kept alone)."""
        entries = self._entries
        old = entries.get(key)
        if old is not None:
            self._weight -= self._weigh(old)
            entries.move_to_end(key)
        entries[key] = value
        self._weight += self._weigh(value)
        while self._weight > self._capacity and len(entries) > 1:
            _, gone = entries.popitem(last=False)
            self._weight -= self._weigh(gone)

    @property
    def weight(self) -> int:
        return self._weight

    def __len__(self) -> int:
        return len(self._entries)
