"""Moving bytes between the event loop and worker threads, with bounded memory both ways.

Layer extraction and archive writing are blocking file work, so they run in threads; the HTTP body
arrives (and the response leaves) on the event loop. ``BodyPipe`` feeds a request body to a thread
as a file object; ``iterate_in_thread`` drains a blocking generator from the loop. Each holds at most
a few chunks, so peak memory does not grow with the size of an image.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from typing import Protocol, TypeVar

from berth.api.bodies import BodyStream

T = TypeVar("T")
_EOF = b""
_ABORT = None


class Reader(Protocol):
    """What a worker thread reads a request body from: a ``BodyPipe``, or the connection's socket
    itself (``rawbody.SocketBody``) when the connection handed the body over."""

    def read(self, n: int = -1) -> bytes: ...


def body_reader(body: AsyncIterable[bytes]) -> tuple[Reader, BodyPipe | None, asyncio.Task[None] | None]:
    """A blocking reader of ``body`` for one worker thread; the pipe and the task that feeds it from
    the loop when there is one (the task is to be awaited, the pipe aborted if the work fails)."""
    if isinstance(body, BodyStream) and (raw := body.take_reader()) is not None:
        return raw, None, None
    pipe = BodyPipe()
    return pipe, pipe, asyncio.create_task(pipe.feed(body))


class BodyPipe:
    """A file object for a worker thread, fed from the event loop with ``feed``."""

    COALESCE = 256 << 10  # at most depth × this (4 MiB) wait in the queue

    def __init__(self, depth: int = 16) -> None:
        self._q: queue.Queue[bytes | None] = queue.Queue(depth)
        self._buf = b""
        self._eof = False
        self.aborted = threading.Event()

    async def feed(self, body: AsyncIterable[bytes]) -> None:
        """Copy ``body`` into the pipe (waiting while it is full), then mark its end. Pieces are
        gathered up to ``COALESCE`` bytes: the connection hands out what each read got (25 KiB on
        average from the docker CLI), and a queue of such small pieces held the reader back."""
        pending: list[bytes] = []
        size = 0
        try:
            async for chunk in body:
                pending.append(bytes(chunk))
                size += len(chunk)
                if size >= self.COALESCE:
                    await self._put(pending[0] if len(pending) == 1 else b"".join(pending))
                    pending, size = [], 0
            if pending:
                await self._put(b"".join(pending))
            await self._put(_EOF)
        except BaseException:
            self.abort()
            raise

    async def _put(self, item: bytes) -> None:
        while not self.aborted.is_set():
            try:
                self._q.put_nowait(item)
                return
            except queue.Full:
                await asyncio.sleep(0.002)

    def abort(self) -> None:
        """Make the reading thread fail at its next read (the client went away)."""
        self.aborted.set()
        try:
            self._q.put_nowait(_ABORT)
        except queue.Full:
            pass

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left for n < 0); b"" at the end. Returns the current chunk
        or a slice of it, so large reads cost no copying."""
        while not self._buf and not self._eof:
            try:
                item = self._q.get(timeout=0.5)
            except queue.Empty:
                if self.aborted.is_set():
                    raise ConnectionAbortedError("the client went away") from None
                continue
            if item is _ABORT:
                raise ConnectionAbortedError("the client went away")
            if item == _EOF:
                self._eof = True
                break
            self._buf = item
        if n < 0:
            parts = [self._buf]
            self._buf = b""
            while chunk := self.read(1 << 20):
                parts.append(chunk)
            return b"".join(parts)
        if len(self._buf) <= n:
            data, self._buf = self._buf, b""
            return data
        data, self._buf = self._buf[:n], self._buf[n:]
        return data


async def run_in_own_thread(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in a thread of its own, not the loop's shared pool: for work that lasts as long
    as a client keeps sending (an upload read from a BodyPipe). On the shared pool (6 threads on a
    2-core machine), a handful of slow uploads would stall every other request that needs a thread."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def done(result: T | None, exc: BaseException | None) -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the loop side, raised there
            loop.call_soon_threadsafe(done, None, exc)
        else:
            loop.call_soon_threadsafe(done, result, None)

    threading.Thread(target=run, name="berth-upload", daemon=True).start()
    return await fut


async def consume_in_thread(body: AsyncIterable[bytes], fn: Callable[..., T], *args: object) -> T:
    """``fn(reader, *args)`` in a thread of its own, reading ``body`` (``body_reader``). The work
    decides: when it fails (a bad entry early in a large upload), its error is raised at once and the
    rest of the body is not waited for (the pipe would stay full, and the request hang)."""
    reader, pipe, feeder = body_reader(body)
    work = asyncio.create_task(run_in_own_thread(fn, reader, *args))
    try:
        result = await work
        if feeder is not None:
            await feeder
        return result
    except BaseException:
        await abandon(work, pipe, feeder)
        raise


async def abandon(work: asyncio.Future[T], pipe: BodyPipe | None, feeder: asyncio.Task[None] | None) -> None:
    """The work failed or its client went: the pipe's reader fails at its next read, the feeder stops,
    and both are waited for."""
    if pipe is not None:
        pipe.abort()
    if feeder is not None:
        feeder.cancel()
    await asyncio.gather(work, *(f for f in (feeder,) if f is not None), return_exceptions=True)


async def iterate_in_thread(make: Callable[[], Iterator[T]], depth: int = 8) -> AsyncIterator[T]:
    """Run the generator ``make()`` in a thread and yield its items on the event loop."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[tuple[str, object]] = asyncio.Queue(depth)
    stop = threading.Event()

    def run() -> None:
        try:
            for item in make():
                if stop.is_set():
                    return
                asyncio.run_coroutine_threadsafe(q.put(("item", item)), loop).result()
            asyncio.run_coroutine_threadsafe(q.put(("end", None)), loop).result()
        except BaseException as exc:  # noqa: BLE001 - handed to the loop side, raised there
            if not stop.is_set():
                asyncio.run_coroutine_threadsafe(q.put(("error", exc)), loop).result()

    thread = threading.Thread(target=run, name="berth-stream", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = await q.get()
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        while not q.empty():
            q.get_nowait()
