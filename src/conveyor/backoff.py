"""Backoff: the waits of a retry loop that keeps trying until its trouble passes."""

from __future__ import annotations


class Backoff:
    """Doubling waits, from `first` up to `most` seconds; reset() after a success."""

    def __init__(self, first: float = 0.2, most: float = 10.0) -> None:
        self._first = first
        self._most = most
        self._next = first

    def next(self) -> float:
        """The wait before the next try."""
        delay = self._next
        self._next = min(delay * 2, self._most)
        return delay

    def reset(self) -> None:
        """The last try worked: start from the shortest wait again."""
        self._next = self._first
