"""The plugin's listener: starts the throttle controller inside the scheduler (``on_starting``), and records
the exception of a failed try of a task that is not flux's (``on_task_instance_failed``) for the controller, and
gives back a flux task's try that the scheduler failed itself (a try lost to the orchestrator).

``on_starting`` fires for every Job (scheduler, triggerer, dag-processor) before
its type is set, so the check waits until the Job is set up and starts the
controller only in a scheduler. With several schedulers each starts one; the
lease in the database lets one act at a time.
"""

from __future__ import annotations

import threading
import time

from airflow.listeners import hookimpl


@hookimpl
def on_starting(component) -> None:
    if not hasattr(component, "job_type"):
        return  # a task runner, not a Job

    def start_if_scheduler() -> None:
        for _ in range(120):
            if component.job_type:
                break
            time.sleep(0.5)
        if component.job_type == "SchedulerJob":
            from flux_provider.throttle.controller import start_in_background

            start_in_background()

    threading.Thread(target=start_if_scheduler, name="flux-throttle-start", daemon=True).start()


def _lost_in_scheduler(task_instance, error) -> None:
    """The scheduler failed a try itself (its process never reported): a try lost to the orchestrator
    (:mod:`flux_provider.throttle.lost`). Only in the scheduler: the API server's calls are people's."""
    from flux_provider.throttle import controller

    if not controller.in_scheduler() or not error:
        return
    try:
        from flux_provider.throttle import lost

        lost.on_scheduler_failure(task_instance, error)
    except Exception as exc:  # never in the way of the scheduler
        import logging

        logging.getLogger(__name__).warning("flux: could not record a lost try: %s", exc)


@hookimpl
def on_task_instance_failed(previous_state, task_instance, error) -> None:
    """In the task's own process (the only one that has the exception): a stock operator's failed try leaves
    its exception's types and message as the XCom ``flux_error``, which the controller classes by an
    adopted pool's rules (:mod:`flux_provider.throttle.adopted`). Flux operators record their own."""
    push = getattr(task_instance, "xcom_push", None)
    if push is None:
        _lost_in_scheduler(task_instance, error)
        return
    if not isinstance(error, BaseException):
        return
    from flux_provider.errors import ERROR_XCOM, ErrorRecord
    from flux_provider.operators.base import FluxOperator

    if isinstance(getattr(task_instance, "task", None), FluxOperator):
        return
    try:
        push(key=ERROR_XCOM, value=ErrorRecord.of(error).to_json())
    except Exception as exc:  # recording must never hide the task's own failure
        import logging

        logging.getLogger(__name__).warning("flux: could not record the failed try's exception: %s", exc)
