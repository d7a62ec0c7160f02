"""Stages of a stream that run beside each other: a source's dump is read on its own thread
into a bounded queue, so the tool writing it (pg_dump, mariadb-dump) never waits while drkit
compresses and seals the previous chunks, and memory stays bounded by the queue's depth.

The reading thread is the only one that touches the source's iterator; an error it raises
reaches the consumer at the point in the stream where it happened.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

#: chunks of up to 1 MiB waiting between the reading thread and the consumer
READ_AHEAD_DEPTH = 16
_POLL_SECONDS = 0.25
#: how long leaving early waits for the reading thread; one blocked in a stuck tool's pipe is
#: left behind (a daemon) and ends when the source's context kills the tool
_STOP_WAIT_SECONDS = 2.0


class _End:
    """The source's iterator is exhausted."""


@dataclass
class _Failed:
    error: BaseException


@contextmanager
def read_ahead(chunks: Iterable[bytes], depth: int = READ_AHEAD_DEPTH) -> Iterator[Iterator[bytes]]:
    """``chunks``, read on a thread of its own, up to ``depth`` chunks ahead of the consumer.

    Leaving the context stops the reading thread (it closes the iterator on its own thread)
    and waits for it, so the source's context can clean up after it (a thread blocked reading
    a stuck tool is waited for at most ``_STOP_WAIT_SECONDS``)."""
    items: queue.Queue[bytes | _End | _Failed] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: bytes | _End | _Failed) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        iterator = iter(chunks)
        try:
            for chunk in iterator:
                if not put(chunk):
                    return
            put(_End())
        except BaseException as error:  # handed to the consumer, raised there
            put(_Failed(error))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def consume() -> Iterator[bytes]:
        while True:
            item = items.get()
            if isinstance(item, _End):
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item

    thread = threading.Thread(target=read, name="read-source", daemon=True)
    thread.start()
    try:
        yield consume()
    finally:
        stop.set()
        deadline = time.monotonic() + _STOP_WAIT_SECONDS
        while thread.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):  # unblock a reader waiting for room
                items.get(timeout=_POLL_SECONDS)
