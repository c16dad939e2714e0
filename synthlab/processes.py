"""Work spread over fresh processes: one item each, results in the items' order, progress as they finish."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

from synthlab.progress import StageProgress

Item = TypeVar("Item")
Result = TypeVar("Result")


def map_in_processes(function: Callable[[Item], Result], items: Sequence[Item], progress: StageProgress, what: str,
                     workers: int = 0, verbs: tuple[str, str] = ("reading", "read")) -> list[Result]:
    """``function`` of each item, in the items' order. With ``workers`` of 2 or more that many fresh ("spawn")
    processes work at once, sharing the CPU's threads; ``function`` must then be picklable: a module-level
    function or a ``functools.partial`` of one. ``verbs`` word the progress ("reading … 2 at once", "read … 3/3")."""
    doing, done_verb = verbs
    if workers < 2 or len(items) < 2:
        results = []
        for index, item in enumerate(items):
            progress(index / max(1, len(items)), f"{doing} {what} {index + 1}/{len(items)}")
            results.append(function(item))
        return results
    processes = min(workers, len(items))
    progress(0.0, f"{doing} {len(items)} {what}, {processes} at once")
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_share_threads, initargs=(processes,))
    try:
        futures = [pool.submit(function, item) for item in items]
        for done, future in enumerate(as_completed(futures), start=1):
            future.result()  # the first failure stops the work at once
            progress(done / len(items), f"{done_verb} {what} {done}/{len(items)}")
        return [future.result() for future in futures]
    finally:
        pool.shutdown(cancel_futures=True)


def _share_threads(processes: int) -> None:
    """Give each process its share of the CPU's threads (ITK would otherwise take them all in each)."""
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(max(1, (os.cpu_count() or 1) // processes))
