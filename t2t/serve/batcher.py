"""Dynamic batching: the requests for one model that arrive within a few milliseconds are decoded as
one batch by that model's decoding thread, so many small concurrent requests get batch throughput
while the event loop never waits on decoding.

A request is a `Job` (its inputs and decoding settings); jobs with the same settings can share a
batch. The queue is bounded in sentences, counted from acceptance to answer (waiting or being
decoded): `submit` refuses at once with `QueueFull` instead of letting a backlog grow.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections import deque
from typing import Any, Callable, Hashable, Sequence

from t2t.errors import T2TError

log = logging.getLogger("t2t")


class QueueFull(Exception):
    """The model's queue holds as many sentences as it may: answer 503 and let the client retry."""


@dataclasses.dataclass(eq=False)
class Job:
    inputs: Sequence[Any]
    key: Hashable                     # jobs with equal keys may be decoded in one batch
    tokens: int                       # source tokens, for the batch budget
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    accepted: float = dataclasses.field(default_factory=time.perf_counter)
    cancelled: bool = False           # its client gave up (timeout): skip it if not started

    def resolve(self, result=None, error: BaseException | None = None) -> None:
        def set_():
            if not self.future.done():
                self.future.set_exception(error) if error is not None else self.future.set_result(result)
        self.loop.call_soon_threadsafe(set_)


@dataclasses.dataclass
class BatchInfo:
    """What the batch that decoded a job held: the response reports it."""
    requests: int
    sentences: int
    wait_ms: float
    decode_ms: float


class Batcher:
    """One decoding thread for one model.

    `decode(inputs, key) -> results` decodes a batch (one result per input, in order); it runs on
    the thread only. A batch takes jobs of the first waiting job's key, in arrival order, until
    `max_batch_tokens` source tokens or `max_batch_sentences` sentences, waiting at most
    `max_wait_ms` after its first job for more to arrive."""

    def __init__(self, decode: Callable[[list, Hashable], list], name: str = "model", *,
                 max_wait_ms: float = 5.0, max_batch_tokens: int = 4096, max_batch_sentences: int = 64,
                 max_queue: int = 256, stall_s: float = 15.0):
        self.decode, self.name = decode, name
        self.stall_s = stall_s                # a batch decoding longer than this counts as stalled
        self.max_wait = max_wait_ms / 1000.0
        self.max_batch_tokens, self.max_batch_sentences = max_batch_tokens, max_batch_sentences
        self.max_queue = max_queue
        self.pending = 0                      # sentences accepted and not yet answered
        self.batches = self.sentences = 0     # decoded so far
        self._jobs: deque[Job] = deque()
        self._free_since = 0.0                # when the last batch was decoded
        self.busy_since: float | None = None  # when the batch being decoded started (time.monotonic())
        self.stopping = threading.Event()     # set by close(): a search in progress stops at its next step
        self.draining = False                 # shutting down: no new jobs, the accepted ones go on
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=f"t2t-decode-{name}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ event-loop side
    def submit(self, inputs: Sequence[Any], key: Hashable, tokens: int) -> Job:
        """Queue a job (called on the event loop); raises QueueFull when it does not fit."""
        loop = asyncio.get_running_loop()
        with self._cond:
            if self._stop or self.draining:
                raise QueueFull("the server is shutting down")
            if self.pending + len(inputs) > self.max_queue:
                raise QueueFull(f"model '{self.name}' has {self.pending} sentences queued (limit {self.max_queue})")
            job = Job(list(inputs), key, tokens, loop.create_future(), loop)
            self.pending += len(inputs)
            self._jobs.append(job)
            self._cond.notify()
        return job

    def cancel(self, job: Job) -> None:
        """The client stopped waiting: drop the job if it has not been taken yet."""
        with self._cond:
            job.cancelled = True
            if job in self._jobs:
                self._jobs.remove(job)
                self.pending -= len(job.inputs)

    def close(self, wait_s: float = 10.0) -> None:
        """Stop: the batch being decoded stops at its next step and its jobs, and those still queued,
        fail (the server is shutting down); waits at most `wait_s` for the thread."""
        with self._cond:
            self._stop = True
            self.stopping.set()
            queued, self._jobs = list(self._jobs), deque()
            self.pending -= sum(len(j.inputs) for j in queued)
            self._cond.notify_all()
        for job in queued:
            job.resolve(error=QueueFull("the server is shutting down"))
        self._thread.join(timeout=wait_s)

    @property
    def state(self) -> str:
        """idle, or decoding (a batch started less than `stall_s` ago), or stalled."""
        since = self.busy_since
        if since is None:
            return "idle"
        return "stalled" if time.monotonic() - since > self.stall_s else "decoding"

    # ------------------------------------------------------------------ decoding thread
    def _take(self) -> list[Job] | None:
        """The next batch's jobs (blocking), or None when closed."""
        with self._cond:
            while not self._jobs and not self._stop:
                self._cond.wait()
            if self._stop:
                return None
            first = self._jobs[0]
            # wait from the later of its arrival and the end of the last batch: under load, the
            # clients the last batch answered come back within a few ms and join this batch,
            # instead of batches alternating between two halves of the clients
            deadline = max(first.accepted, self._free_since) + self.max_wait
            while True:
                batch, tokens, sentences = [], 0, 0
                for job in self._jobs:
                    if job.key != first.key:
                        continue
                    if batch and (tokens + job.tokens > self.max_batch_tokens
                                  or sentences + len(job.inputs) > self.max_batch_sentences):
                        break
                    batch.append(job)
                    tokens, sentences = tokens + job.tokens, sentences + len(job.inputs)
                full = tokens >= self.max_batch_tokens or sentences >= self.max_batch_sentences
                left = deadline - time.perf_counter()
                if full or left <= 0 or self._stop:
                    break
                self._cond.wait(left)
            for job in batch:
                self._jobs.remove(job)
            return batch

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            with self._cond:                 # taken, then given up on: never decoded
                self.pending -= sum(len(j.inputs) for j in jobs if j.cancelled)
                jobs = [j for j in jobs if not j.cancelled]
            if not jobs:
                continue
            inputs = [x for j in jobs for x in j.inputs]
            start = time.perf_counter()
            self.busy_since = time.monotonic()
            try:
                results, error = self.decode(inputs, jobs[0].key), None
            except T2TError as e:           # a request's own problem (e.g. its budget ran out)
                results, error = None, e
            except Exception as e:          # answered to each client of the batch; the thread goes on
                log.exception(f"serve: decoding a batch for model '{self.name}' failed")
                results, error = None, e
            finally:
                self.busy_since = None
            done = time.perf_counter()
            with self._cond:
                self._free_since = done
                self.pending -= len(inputs)
                self.batches += 1
                self.sentences += len(inputs)
            at = 0
            for job in jobs:
                n = len(job.inputs)
                info = BatchInfo(len(jobs), len(inputs), (start - job.accepted) * 1000, (done - start) * 1000)
                if error is not None:
                    job.resolve(error=error)
                else:
                    job.resolve((results[at: at + n], info))
                at += n
