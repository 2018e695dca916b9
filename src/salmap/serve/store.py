"""What the page keeps between requests: each browser session's images, and the maps and curves
already computed (shared, keyed by everything they depend on). Everything lives in memory and
is bounded; nothing is written to disk."""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Value = TypeVar("Value")
Item = TypeVar("Item")

TOKEN_BYTES = 18


def new_token() -> str:
    """A random URL-safe identifier (144 bits), for sessions and images."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def is_token(text: str) -> bool:
    """Whether `text` has the form of `new_token`'s identifiers (and so holds no path)."""
    return len(text) == 24 and all(c.isalnum() or c in "-_" for c in text)


class Bounded(Generic[Item]):
    """A thread-safe mapping that keeps the `limit` most recently used items."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[Hashable, Item] = OrderedDict()
        self._guard = threading.Lock()

    def get(self, key: Hashable) -> Item | None:
        with self._guard:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, item: Item) -> None:
        with self._guard:
            self._items[key] = item
            self._items.move_to_end(key)
            while len(self._items) > self.limit:
                self._items.popitem(last=False)


class Session(Generic[Item]):
    """One browser's images, by random identifier; the oldest are dropped past `limit`."""

    def __init__(self, limit: int) -> None:
        self.images: Bounded[Item] = Bounded(limit)

    def add(self, image: Item) -> str:
        identifier = new_token()
        self.images.put(identifier, image)
        return identifier

    def image(self, identifier: str) -> Item | None:
        return self.images.get(identifier) if is_token(identifier) else None


class Sessions(Generic[Item]):
    """Browser sessions by cookie token; the least recently used are dropped past `limit`."""

    def __init__(self, limit: int = 64, images_per_session: int = 12) -> None:
        self._sessions: Bounded[Session[Item]] = Bounded(limit)
        self.images_per_session = images_per_session

    def get(self, token: str | None) -> Session[Item] | None:
        return self._sessions.get(token) if token and is_token(token) else None

    def create(self) -> tuple[str, Session[Item]]:
        token, session = new_token(), Session(self.images_per_session)
        self._sessions.put(token, session)
        return token, session


class ComputeCache(Generic[Value]):
    """Results by key, computed once: a second request for a key being computed waits for the
    first instead of computing it again; errors are not kept."""

    def __init__(self, limit: int) -> None:
        self._done: Bounded[Value] = Bounded(limit)
        self._pending: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: Hashable) -> Value | None:
        return self._done.get(key)

    def get_or_compute(self, key: Hashable, compute: Callable[[], Value]) -> tuple[Value, bool]:
        """The value for `key` and whether it was already there."""
        found = self._done.get(key)
        if found is not None:
            return found, True
        with self._guard:
            pending = self._pending.setdefault(key, threading.Lock())
        with pending:
            found = self._done.get(key)
            if found is not None:
                return found, True
            try:
                value = compute()
                self._done.put(key, value)
            finally:
                with self._guard:
                    self._pending.pop(key, None)
        return value, False
