"""Independent tasks on Dask workers (``distributed``): the study's training runs (:mod:`instabnn.model.study`) and
the co-simulation shards (:mod:`instabnn.sim.cosim` ``--shards``).

By default a ``LocalCluster`` of ``workers`` processes with one thread each (``processes=False``: threads in this
process, for tests); ``scheduler``: the address of a running Dask cluster, whose workers need this environment and
the files the tasks read and write on a shared file system; ``workers=0`` without a scheduler: one task after
another in this process. A failed task is logged and retried ``retries`` times, then reported to ``on_failure``;
the caller decides which tasks are already done (nothing here is persistent).
"""

from __future__ import annotations

from typing import Callable


class EngineError(RuntimeError):
    """The cluster cannot be reached; the message names the address."""


def run_tasks(run: Callable, tasks: list, on_result: Callable, on_failure: Callable, scheduler: str | None = None,
              workers: int = 2, retries: int = 1, log=print, processes: bool = True) -> None:
    """``run(task, attempt)`` for every task (each has a unique ``key``); ``on_result(task, result)`` as each
    finishes, ``on_failure(task, message)`` once one has failed ``retries + 1`` times. Tasks start in the given
    order (a retry before the rest); no tasks, no cluster."""
    if not tasks:
        return
    if workers == 0 and scheduler is None:
        for task in tasks:
            for attempt in range(retries + 1):
                try:
                    on_result(task, run(task, attempt))
                    break
                except Exception as e:  # noqa: BLE001 - a task's failure is reported, never fatal to the others
                    if not _report_failure(task, attempt, retries, e, on_failure, log):
                        break
        return

    import logging

    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes, dashboard_address=None,
                               silence_logs=logging.ERROR)
    try:
        client = Client(scheduler or cluster, timeout="60s")
    except OSError as e:
        if cluster is not None:
            cluster.close()
        raise EngineError(f"--scheduler {scheduler}: cannot connect ({e})") from None
    try:
        pending, futures = {}, []
        for i, task in enumerate(tasks):
            futures.append(client.submit(run, task, 0, key=f"{task.key}-attempt0", pure=False,
                                         priority=len(tasks) - i))
            pending[futures[-1].key] = (task, 0)
        queue = as_completed(futures)
        for fut in queue:
            task, attempt = pending.pop(fut.key)
            if fut.status == "finished":
                on_result(task, fut.result())
                continue
            if _report_failure(task, attempt, retries, fut.exception(), on_failure, log):
                retry = client.submit(run, task, attempt + 1, key=f"{task.key}-attempt{attempt + 1}", pure=False,
                                      priority=len(tasks) + 1)
                pending[retry.key] = (task, attempt + 1)
                queue.add(retry)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _report_failure(task, attempt, retries, error, on_failure, log) -> bool:
    """Log a failed attempt; True if it is to be retried, else ``on_failure`` is called."""
    message = f"{type(error).__name__}: {error}".splitlines()[0]
    if attempt < retries:
        log(f"{task.key} failed (attempt {attempt + 1} of {retries + 1}): {message}; retrying", flush=True)
        return True
    log(f"{task.key} FAILED after {attempt + 1} attempt(s): {message}", flush=True)
    on_failure(task, message)
    return False
