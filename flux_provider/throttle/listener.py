"""Starts the throttle controller inside the scheduler (Airflow listener, ``on_starting``).

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
