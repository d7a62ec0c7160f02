"""Read once, ship everywhere: one producer feeds a bounded queue per store, and each store
uploads from its own thread. A store that fails stops receiving (its queue is drained so the
producer never blocks on it) while the others carry on; memory stays bounded by the queue
depth whatever the size of the stream.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from drkit.errors import StoreUnavailable
from drkit.stores.base import Store

log = logging.getLogger(__name__)

QUEUE_DEPTH = 8  # chunks of about 1 MiB: bounded memory per store


class _End:
    """Marks the end of a complete stream."""


@dataclass
class _Abort:
    """Tells a store's upload that the stream failed: the store must keep nothing."""

    error: BaseException


class StreamAborted(Exception):
    """Raised inside a store's chunk iterator when the producer failed."""


class Upload:
    """One store's upload of one object, fed chunk by chunk from the producer thread."""

    def __init__(self, store: Store, key: str):
        self.store = store
        self.key = key
        self.size = 0
        self.error: BaseException | None = None
        self._ended = False  # the producer's end marker was consumed
        self._queue: queue.Queue[bytes | _End | _Abort] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._thread = threading.Thread(target=self._run, name=f"upload-{store.name}", daemon=True)
        self._thread.start()

    def _chunks(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if isinstance(item, _End | _Abort):
                self._ended = True
                if isinstance(item, _Abort):
                    raise StreamAborted(str(item.error))
                return
            yield item

    def _run(self) -> None:
        try:
            self.size = self.store.put(self.key, self._chunks())
        except StreamAborted:
            return
        except BaseException as error:
            self.error = error
            log.debug("upload of %s to %s failed", self.key, self.store.name, exc_info=True)
            self._drain()

    def _drain(self) -> None:
        """After a failure, swallow what the producer still sends until it says it is done
        (unless the store had already read the end marker, e.g. failing on the final write)."""
        while not self._ended:
            self._ended = isinstance(self._queue.get(), _End | _Abort)

    @property
    def failed(self) -> bool:
        return self.error is not None

    def send(self, chunk: bytes) -> None:
        """Queue a chunk, waiting while the queue is full, unless this upload already failed."""
        while not self.failed:
            try:
                self._queue.put(chunk, timeout=0.25)
                return
            except queue.Full:
                continue

    def close(self, abort: BaseException | None = None) -> None:
        """Close the stream (or abort it); the upload ends on its own thread."""
        self._queue.put(_Abort(abort) if abort is not None else _End())

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a closed upload to end."""
        self._thread.join(timeout)
        if self._thread.is_alive() and self.error is None:
            self.error = StoreUnavailable(f"store {self.store.name}: upload did not finish in time")

    def finish(self, abort: BaseException | None = None, timeout: float | None = None) -> None:
        """Close the stream (or abort it) and wait for the upload to end."""
        self.close(abort)
        self.wait(timeout)


def finish_all(uploads: Sequence[Upload], abort: BaseException | None = None) -> None:
    for upload in uploads:
        upload.finish(abort)
