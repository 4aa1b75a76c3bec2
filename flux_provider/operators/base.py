"""What every flux operator shares: one recovery mechanism and a classified record of each failure.

Subclasses implement :meth:`FluxOperator.work`. When it fails, ``execute``:

1. classifies the failure (a :class:`~flux_provider.errors.FluxError` carries its
   class; anything else is ``unknown``);
2. asks the data set's :class:`~flux_provider.recovery.Recovery` rules what to do
   and logs the class, the rule that fired and the action;
3. pushes the XCom ``flux_error`` (the classification plus the decision) that the
   throttle controller and the dashboard read;
4. sends the alerts the rule asks for, raises ``AirflowSkipException`` for a
   skip, and makes sure Airflow's retry policy (:class:`~flux_provider.recovery.RecoveryPolicy`,
   installed on every flux operator) sees the failure: a terminal error that a
   rule retries is re-raised as transient.
"""

from __future__ import annotations

import datetime as dt
import socket
import warnings

from airflow.sdk import BaseOperator

from flux_provider.errors import (
    ERROR_XCOM,
    ErrorClass,
    ErrorRecord,
    FluxError,
    FluxTerminalError,
    FluxTransientError,
    flux_error,
    typed,
)
from flux_provider.hooks.s3_client import remove_insert_leftovers
from flux_provider.operators.lineage import Lineage
from flux_provider.recovery import Recovery, RecoveryPolicy, rule_try
from flux_provider.retention import LandingOutcome
from flux_provider.run_day import PARTITION_VARIABLE, context_getter, render_error_text, run_day, run_partition_key
from flux_provider.run_day import VARIABLE as DAY_VARIABLE
from flux_provider.source_timing import TIMING_XCOM

__all__ = ["ERROR_XCOM", "FluxOperator"]


def lost_try_retry_delay() -> dt.timedelta:
    """Airflow's own wait before the next try when a try dies without reaching the rules (killed by a
    signal or the OOM killer, heartbeat lost): ``[flux] lost_try_retry_delay``, by default the default
    rule's minute, not Airflow's 300 s."""
    from flux_provider.config import flux_float

    return dt.timedelta(seconds=flux_float("lost_try_retry_delay"))


def try_number(context) -> int | None:
    """This try's number (Airflow counts from 1), or None outside a task run."""
    number = getattr(context.get("ti"), "try_number", None)
    return number if isinstance(number, int) else None


def this_host(context) -> str:
    """The host this try runs on, as Airflow records it (``[core] hostname_callable``; the machine's name
    outside a task run)."""
    return getattr(context.get("ti"), "hostname", None) or socket.gethostname()


def runs_beside(context) -> int | None:
    """How many other runs of this DAG are running now (their INSERTs may be writing under a shared table):
    0 outside an Airflow task run (an operator called directly), None when Airflow cannot say."""
    ti = context.get("ti")
    count = getattr(ti, "get_dr_count", None)
    if count is None:
        return 0
    try:
        return max(0, int(count(dag_id=ti.dag_id, states=["running"])) - 1)
    except Exception:  # the API server is away: housekeeping waits for a run that can tell
        return None


class FluxOperator(Lineage, BaseOperator):
    """Base of the flux operators (``dataset`` names the data set; ``step`` the stage).

    :param recovery: the data set's recovery rules (default: 5 retries a minute apart for transient
        errors, terminal ones fail at once; then fail and alert).
    :param partition_grain: ``day`` or ``hour`` for a partitioned data set
        (:mod:`flux_provider.specs.partitions`): ``{{ flux_partition }}`` is the run's partition, and the
        Assets this task updates record it (``add_partitions``). None: not partitioned.
    """

    step: str = "step"
    host: str | None = None  # where this try runs (set by execute)
    flux_result = None  # what this try returned (its XCom), for lineage
    source_timing = None  # an export try's SourceTiming (the adaptive pool's latency signal)

    def __init__(self, *, recovery=None, partition_grain: str | None = None, **kwargs):
        recovery = recovery or Recovery()
        self.partition_grain = partition_grain
        kwargs.setdefault("retry_policy", RecoveryPolicy(recovery))
        if "retries" not in kwargs and "retries" not in (kwargs.get("default_args") or {}):
            kwargs["retries"] = recovery.max_retries  # the rules' counts need that many; an explicit value caps them
        if "retry_delay" not in kwargs and "retry_delay" not in (kwargs.get("default_args") or {}):
            kwargs["retry_delay"] = lost_try_retry_delay()
        super().__init__(**kwargs)
        self.recovery = recovery

    def render_template_fields(self, context, jinja_env=None) -> None:
        """Adds ``{{ flux_day }}`` (:mod:`flux_provider.run_day`) to the context, then renders.

        A template that cannot render is a configuration error: it fails at once, with the field
        and the fix, and is never retried."""
        dag = context_getter(context)("dag")
        try:
            dataset = getattr(self, "dataset", None)
            context[DAY_VARIABLE] = run_day(context, getattr(dag, "timezone", None), dataset=dataset)
            context[PARTITION_VARIABLE] = run_partition_key(
                context, self.partition_grain, context[DAY_VARIABLE], dataset=dataset
            )
            super().render_template_fields(context, jinja_env)
        except FluxError as exc:
            raise self._recover(context, exc) from exc
        except Exception as exc:
            error = FluxTerminalError(
                render_error_text(exc),
                error_class=ErrorClass.CONFIG,
                dataset=getattr(self, "dataset", None),
                step=self.step,
            )
            raise self._recover(context, error) from exc

    def _record_day(self, context) -> None:
        """Each Asset this task updates carries the run's day and, for a partitioned data set, its
        partition (``add_partitions``): runs ``<after>`` it take them as theirs."""
        get = context_getter(context)
        day, partition, events = get(DAY_VARIABLE), get(PARTITION_VARIABLE), get("outlet_events")
        if not day or events is None:
            return
        for outlet in self.outlets or ():
            try:
                events[outlet].extra["day"] = day
            except Exception as exc:  # lineage extras never fail a task
                self.log.warning("could not record the day on %s: %s", outlet, exc)
            if partition:  # what makes the partition-waiting data sets start: an error here must show
                events[outlet].add_partitions(partition)
                self.log.info("%s: wrote partition %s", outlet, partition)

    def work(self, context):
        """The step's own work, which ``execute`` runs inside the recovery rules; returns its XCom."""
        if type(self).run is not FluxOperator.run:  # a subclass written against 1.0, which named it run
            warnings.warn(
                f"{type(self).__name__}.run(context) is deprecated: name the step's body work(context)",
                DeprecationWarning,
                stacklevel=2,
            )
            return self.run(context)
        raise NotImplementedError(f"{type(self).__name__} must implement work(context)")

    def run(self, context):
        """Deprecated name of :meth:`work`."""
        return self.work(context)

    def clean_insert_leftovers(self, context, aws_conn_id: str | None, location: str | None, began) -> int:
        """Remove what killed INSERTs left under a table's ``location`` (written before ``began``, this try's
        start), unless another run of the DAG is running: its INSERT may be writing there right now (a
        catch-up with maxActiveRuns > 1). A later run that runs alone removes them then."""
        beside = runs_beside(context)
        if beside != 0:
            self.log.info(
                "data set %s: %s other run(s) running: insert leftovers under %s are left to a run alone",
                self.dataset,
                "unknown" if beside is None else beside,
                location,
            )
            return 0
        return remove_insert_leftovers(aws_conn_id, location, older_than=began, dataset=self.dataset)

    def prune_landing(self, context, hive, own_run: str | None) -> LandingOutcome | None:
        """Apply the data set's landing rule (``self.landing``, a :class:`~flux_provider.retention.Landing`)
        once this run's load is done (:func:`flux_provider.hooks.landing.prune`), unless another run of the DAG
        is running: its generation is not this one's to judge."""
        from flux_provider.hooks import landing

        where = getattr(self, "landing", None)
        if where is None:
            return None
        if runs_beside(context) != 0:
            self.log.info("data set %s: other runs are running: landing retention waits for a run alone", self.dataset)
            return LandingOutcome(skipped="other runs running")
        return landing.prune(where, hive, own_run, aws_conn_id=getattr(self, "aws_conn_id", None), dataset=self.dataset)

    def _fail(self, message: str, error_class: ErrorClass = ErrorClass.CONFIG) -> FluxError:
        """A classified failure of this operator's step of its data set (terminal or transient by class)."""
        return flux_error(message, error_class=error_class, dataset=getattr(self, "dataset", None), step=self.step)

    def execute(self, context):
        self.host = this_host(context)
        self.source_timing = None
        try:
            result = self.work(context)
        except Exception as exc:
            raise self._recover(context, exc) from exc
        finally:
            self._push_timing(context)
        self.flux_result = result
        self._record_day(context)
        return result

    def _push_timing(self, context) -> None:
        """The try's source timing (an export's), as the XCom the throttle controller reads."""
        push = getattr(context_getter(context)("ti"), "xcom_push", None)
        if self.source_timing is None or push is None:
            return
        try:
            push(key=TIMING_XCOM, value=self.source_timing.to_json())
        except Exception as exc:  # the signal must never fail the try
            self.log.warning("could not record the source's timing: %s", exc)

    def _recover(self, context, exc: Exception) -> BaseException:
        from airflow.sdk.exceptions import AirflowSkipException

        if isinstance(exc, FluxError):
            exc = typed(exc)  # raised where there is no Airflow (a spec, an identifier, a run's day)
        ti = context_getter(context)("ti")
        record = ErrorRecord.of(exc, dataset=getattr(self, "dataset", None), step=self.step)
        number = rule_try(getattr(ti, "try_number", 1) or 1, getattr(ti, "max_tries", None), self.retries)
        outcome = self.recovery.decide(record, number)
        self.log.error(
            "data set %s %s failed [%s]: %s | rule %r -> %s",
            record.dataset,
            self.step,
            record.error_class,
            record.message,
            outcome.rule,
            outcome.reason,
        )
        push = getattr(ti, "xcom_push", None)
        if push is not None:
            try:
                push(key=ERROR_XCOM, value=record.decided(outcome.decision()).to_json())
            except Exception as push_failed:  # reporting must never hide the real failure
                self.log.warning("could not record the error class: %s", push_failed)
        if outcome.alert:
            self.recovery.notify(context, record, outcome)
        if outcome.kind == "skip":
            return AirflowSkipException(f"{outcome.rule}: {outcome.reason} [{record.error_class}] {record.message}")
        if outcome.kind == "retry" and isinstance(exc, FluxError) and exc.terminal:
            exc = FluxTransientError(
                str(exc),
                error_class=ErrorClass.UNKNOWN,
                dataset=exc.dataset,
                step=exc.step,
                server_number=exc.server_number,
                exit_code=exc.exit_code,
            )
        exc.flux_outcome, exc.flux_record = outcome, record
        timing = getattr(self, "source_timing", None)  # an export's: how long its query held the source
        exc.flux_query_seconds = timing.seconds if timing is not None else None
        return exc
