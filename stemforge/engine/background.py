"""Background threads with bounded queues: decode ahead of the network, encode behind it.

Decoding, resampling and encoding spend their time in C (libsndfile, soxr, FFmpeg, LAME) with
the GIL released, so on a thread they overlap with the network instead of adding to it. The
queues are bounded, so memory stays a few blocks deep whatever the track length. An error in a
thread is re-raised in the caller at its next call.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")
_DONE = object()
_POLL_S = 0.1


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


class Prefetch(Generic[T]):
    """Iterates ``items`` on a background thread, at most ``depth`` items ahead of the consumer.

    Use as a context manager (or call :meth:`close`) so that the thread stops when the
    consumer stops early.
    """

    def __init__(self, items: Iterable[T], depth: int = 4, name: str = "stemforge-prefetch"):
        self._queue: queue.Queue = queue.Queue(max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(items,), name=name, daemon=True)
        self._thread.start()

    def _work(self, items: Iterable[T]) -> None:
        try:
            for item in items:
                if not self._put(item):
                    return
            self._put(_DONE)
        except BaseException as exc:  # handed to the consumer
            self._put(_Failed(exc))

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                pass
        return False

    def __iter__(self) -> Iterator[T]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> "Prefetch[T]":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Sink(Generic[T]):
    """Calls ``consume(item)`` on a background thread for every :meth:`put`, in order.

    ``put`` blocks while ``depth`` items wait. :meth:`close` waits for the queue to drain;
    :meth:`put` and :meth:`close` re-raise the first error ``consume`` raised.
    """

    def __init__(self, consume: Callable[[T], None], depth: int = 4, name: str = "stemforge-sink"):
        self._consume = consume
        self._queue: queue.Queue = queue.Queue(max(1, depth))
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (item := self._queue.get()) is not _DONE:
            if self._error is None and not self._cancelled:
                try:
                    self._consume(item)
                except BaseException as exc:
                    self._error = exc

    def put(self, item: T) -> None:
        self._raise()
        self._queue.put(item)

    def close(self) -> None:
        """Wait until every item is consumed; re-raise a consumer error."""
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()
        self._raise()

    def __enter__(self) -> "Sink[T]":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        """On success wait for the queue to drain; on an error skip what is left and stop."""
        if exc_type is not None:
            self._cancelled = True
            if self._thread.is_alive():
                self._queue.put(_DONE)
                self._thread.join()
        else:
            self.close()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error
