"""Identifications asked at the same time by several users of one server, answered in one engine call.

While the engine answers one request, requests that arrive for the same library, model and options wait;
when it is free, the next of them takes every request then waiting and answers them together (one pass
over the library's vectors, one batch through the DNA tower: 8 barcodes together cost about what 4 do
one by one), then hands each request its own answers. A request that finds the engine free runs at once:
nothing ever waits on a timer, so one user alone sees no change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clibd_core.library.identification import Identification, Query

# Queries in one shared call (about half a second of the engine here). A larger request runs on its own,
# beside the shared calls, so that a pipeline's batch of thousands never holds up a user's one barcode.
MAX_SHARED_QUERIES = 64


@dataclass
class _Request:
    queries: list[Query]
    results: list[Identification] | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class SharedCalls:
    """``run(library, model, queries, **options)`` (the engine's identify), shared by concurrent callers."""

    run: Callable[..., list[Identification]]
    max_queries: int = MAX_SHARED_QUERIES
    _turn: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _waiting: dict[tuple, list[_Request]] = field(default_factory=dict, repr=False)
    _busy: set[tuple] = field(default_factory=set, repr=False)

    def __call__(self, library, model, queries: Sequence[Query], **options: Any) -> list[Identification]:
        if len(queries) > self.max_queries:
            return self.run(library, model, queries, **options)
        key = (id(library), id(model), tuple(sorted(options.items())))
        request = _Request(list(queries))
        with self._turn:
            self._waiting.setdefault(key, []).append(request)
        while not request.done:  # a turn may answer earlier requests only (max_queries): then another
            with self._turn:
                self._turn.wait_for(lambda: request.done or key not in self._busy)
                if request.done:
                    break
                self._busy.add(key)
                batch = self._take(key)
            try:
                self._answer(batch, library, model, options)
            finally:
                with self._turn:
                    self._busy.discard(key)
                    self._turn.notify_all()
        if request.error is not None:
            raise request.error
        return request.results

    def _take(self, key: tuple) -> list[_Request]:
        """The waiting requests, first come first, up to ``max_queries`` queries."""
        waiting, batch, size = self._waiting[key], [], 0
        while waiting and size + len(waiting[0].queries) <= self.max_queries:
            batch.append(waiting.pop(0))
            size += len(batch[-1].queries)
        if not waiting:
            del self._waiting[key]
        return batch

    def _answer(self, batch: list[_Request], library, model, options: dict) -> None:
        """One call for the batch; should it fail, each request again on its own, so that an error
        reaches only the user whose queries raised it."""
        try:
            results = self.run(library, model, [q for r in batch for q in r.queries], **options)
            start = 0
            for request in batch:
                request.results = results[start : start + len(request.queries)]
                start += len(request.queries)
        except Exception as error:  # noqa: BLE001 - sorted out per request below
            if len(batch) == 1:
                batch[0].error = error
            else:
                for request in batch:
                    self._answer([request], library, model, options)
        finally:
            with self._turn:
                for request in batch:
                    if request.results is None and request.error is None:
                        request.error = RuntimeError("the identification was interrupted before it answered: ask again")
                    request.done = True
