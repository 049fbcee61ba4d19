"""Where independent jobs run: this process, a local process pool, or a Ray cluster.

One entry point, :func:`run_jobs`, maps a picklable per-job function over jobs and yields
``(job, result)`` pairs as jobs finish. Every executor runs the *same* function, so the
results only depend on the jobs (the walk-forward runner derives each job's seed from the
job itself):

* ``local`` with ``workers=1``: a plain loop in this process;
* ``local`` with ``workers>1``: a :class:`~concurrent.futures.ProcessPoolExecutor` in the
  ``spawn`` context (torch and OpenMP state must not be forked from a threaded parent);
* ``ray``: the function wrapped with ``ray.remote`` (one CPU per task) and scheduled by Ray.
  Without ``ray_address`` a local Ray instance with ``num_cpus=workers`` is started (and shut
  down afterwards); with an address (``auto`` or ``ray://host:10001``) the jobs go to that
  cluster, whose nodes must have this package installed. Ray is an optional extra:
  ``pip install -e ".[ray]"``.

Inside :func:`reuse_pools` the local pool starts once and serves every :func:`run_jobs`
call with the same worker count and initializer (the ground-truth comparison runs three
markets one after the other): its workers import torch and SB3 and load each dataset once,
instead of once per call.

Ray's ``local_mode`` (tasks run serially in the driver) was removed in Ray 2.5x
(``ray.init(local_mode=True)`` raises); a one-CPU local instance is the closest equivalent.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

__all__ = [
    "EXECUTORS",
    "RAY_INSTALL_HINT",
    "ExecutorUnavailableError",
    "reuse_pools",
    "run_jobs",
]

JobT = TypeVar("JobT")
ResultT = TypeVar("ResultT")

EXECUTORS: tuple[str, ...] = ("local", "ray")
"""Executor names accepted by :func:`run_jobs` (and ``--executor``)."""
RAY_INSTALL_HINT = 'pip install -e ".[ray]"'
"""How to get the optional Ray dependency."""


class ExecutorUnavailableError(RuntimeError):
    """The requested executor cannot run here (e.g. Ray is not installed)."""


def run_jobs(
    jobs: Iterable[JobT],
    fn: Callable[[JobT], ResultT],
    *,
    executor: str = "local",
    workers: int = 1,
    initializer: Callable[[], None] | None = None,
    ray_address: str | None = None,
) -> Iterator[tuple[JobT, ResultT]]:
    """Run ``fn(job)`` for every job and yield ``(job, result)`` as each job finishes.

    Args:
        jobs: The jobs; each must be picklable for ``workers>1`` or Ray.
        fn: The per-job function; a module-level function (or a ``functools.partial`` of
            one) so that worker processes can unpickle it.
        executor: ``local`` or ``ray``.
        workers: Parallel jobs: processes of the local pool (1 runs in this process), or
            the CPUs of the local Ray instance (ignored with ``ray_address``).
        initializer: Called once in every worker process (in this process for a serial
            run) and, with Ray, before every task, e.g. to pin torch to one thread.
        ray_address: Address of an existing Ray cluster; None starts a local instance.

    Yields:
        ``(job, result)`` in completion order (submission order when serial).

    Raises:
        ValueError: on an unknown executor or ``workers < 1``.
        ExecutorUnavailableError: if ``executor="ray"`` and Ray is not installed.
        Exception: The first job failure, re-raised after cancelling the jobs not started;
            results yielded before it stay valid.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if executor == "ray":
        return _run_ray(list(jobs), fn, workers, initializer, ray_address)
    if workers == 1:
        return _run_serial(jobs, fn, initializer)
    return _run_pool(list(jobs), fn, workers, initializer)


def _run_serial(
    jobs: Iterable[JobT], fn: Callable[[JobT], ResultT], initializer: Callable[[], None] | None
) -> Iterator[tuple[JobT, ResultT]]:
    if initializer is not None:
        initializer()
    for job in jobs:
        yield job, fn(job)


_REUSED_POOLS: dict[tuple[int, Any], ProcessPoolExecutor] | None = None
"""Open pools by ``(workers, initializer)`` inside :func:`reuse_pools`; None outside it."""


def _new_pool(workers: int, initializer: Callable[[], None] | None) -> ProcessPoolExecutor:
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=initializer)


@contextlib.contextmanager
def reuse_pools() -> Iterator[None]:
    """Keep local process pools alive across :func:`run_jobs` calls until the block ends.

    Results do not change: every job still runs the same function on its own inputs; only
    the worker start-up (interpreter, imports, per-process data caches) is paid once. A pool
    whose worker died is replaced on the next call. Nested blocks share the outer one's pools.
    """
    global _REUSED_POOLS
    if _REUSED_POOLS is not None:
        yield
        return
    _REUSED_POOLS = {}
    try:
        yield
    finally:
        pools, _REUSED_POOLS = _REUSED_POOLS, None
        for pool in pools.values():
            pool.shutdown(wait=True, cancel_futures=True)


def _run_pool(
    jobs: list[JobT],
    fn: Callable[[JobT], ResultT],
    workers: int,
    initializer: Callable[[], None] | None,
) -> Iterator[tuple[JobT, ResultT]]:
    if _REUSED_POOLS is None:
        with _new_pool(workers, initializer) as own:
            yield from _drain(own, jobs, fn)
        return
    key = (workers, initializer)
    reused = _REUSED_POOLS.get(key)
    pool = reused if reused is not None else _new_pool(workers, initializer)
    _REUSED_POOLS[key] = pool
    try:
        yield from _drain(pool, jobs, fn)
    except BrokenProcessPool:
        _REUSED_POOLS.pop(key, None)  # a dead worker breaks the pool: start afresh next time
        pool.shutdown(wait=False, cancel_futures=True)
        raise


def _drain(
    pool: ProcessPoolExecutor, jobs: list[JobT], fn: Callable[[JobT], ResultT]
) -> Iterator[tuple[JobT, ResultT]]:
    """Submit every job to ``pool`` and yield results as they finish."""
    pending: dict[Future[ResultT], JobT] = {pool.submit(fn, job): job for job in jobs}
    try:
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                yield job, future.result()  # re-raises the job's exception
    finally:
        for future in pending:
            future.cancel()


def _ray_task(fn: Callable[[Any], Any], initializer: Callable[[], None] | None, job: Any) -> Any:
    """Body of the Ray task: the same per-job function, after the worker initializer."""
    if initializer is not None:
        initializer()
    return fn(job)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ExecutorUnavailableError(
            f"--executor ray needs Ray, which is not installed: {RAY_INSTALL_HINT}"
        ) from None
    return ray


def _run_ray(
    jobs: list[JobT],
    fn: Callable[[JobT], ResultT],
    workers: int,
    initializer: Callable[[], None] | None,
    ray_address: str | None,
) -> Iterator[tuple[JobT, ResultT]]:
    ray = _import_ray()  # before the first next(): a missing Ray fails at the call site

    def generate() -> Iterator[tuple[JobT, ResultT]]:
        started_here = not ray.is_initialized()
        if started_here:
            if ray_address is not None:
                ray.init(address=ray_address)
            else:
                ray.init(num_cpus=workers, include_dashboard=False)
        try:
            task = ray.remote(num_cpus=1)(_ray_task)
            fn_ref = ray.put(fn)
            pending = {task.remote(fn_ref, initializer, job): job for job in jobs}
            try:
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    for ref in ready:
                        job = pending.pop(ref)
                        # ray.get re-raises the task's exception (also an instance of its type)
                        yield job, ray.get(ref)
            finally:
                for ref in pending:
                    ray.cancel(ref)
        finally:
            if started_here:
                ray.shutdown()

    return generate()
