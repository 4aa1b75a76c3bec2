"""What every flux operator shares: one recovery mechanism and a classified record of each failure.

Subclasses implement :meth:`FluxOperator.run`. When it fails, ``execute``:

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

from airflow.sdk import BaseOperator

from flux_provider.errors import ErrorClass, FluxError, FluxTransientError

ERROR_XCOM = "flux_error"


def error_report(exc: BaseException, *, dataset: str | None, step: str | None) -> dict:
    if isinstance(exc, FluxError):
        return exc.as_dict()
    return {"error_class": "unknown", "terminal": False, "dataset": dataset, "step": step, "server_number": None,
            "exit_code": None, "message": f"{type(exc).__name__}: {exc}"[:2000]}


class FluxOperator(BaseOperator):
    """Base of the flux operators (``dataset`` names the data set; ``step`` the stage).

    :param recovery: the data set's recovery rules (default: 5 retries a minute apart for transient
        errors, terminal ones fail at once; then fail and alert).
    """

    step: str = "step"

    def __init__(self, *, recovery=None, **kwargs):
        from flux_provider.recovery import Recovery, RecoveryPolicy

        recovery = recovery or Recovery()
        kwargs.setdefault("retry_policy", RecoveryPolicy(recovery))
        if "retries" not in kwargs and "retries" not in (kwargs.get("default_args") or {}):
            kwargs["retries"] = recovery.max_retries  # the rules' counts need that many; an explicit value caps them
        super().__init__(**kwargs)
        self.recovery = recovery

    def run(self, context):
        raise NotImplementedError

    def execute(self, context):
        try:
            return self.run(context)
        except Exception as exc:
            raise self._recover(context, exc) from exc

    def _recover(self, context, exc: Exception) -> BaseException:
        from airflow.sdk.exceptions import AirflowSkipException

        ti = context.get("ti") if hasattr(context, "get") else None
        report = error_report(exc, dataset=getattr(self, "dataset", None), step=self.step)
        outcome = self.recovery.decide(report, getattr(ti, "try_number", 1) or 1)
        self.log.error("data set %s %s failed [%s]: %s | rule %r -> %s", report.get("dataset"), self.step,
                       report["error_class"], report.get("message"), outcome.rule, outcome.reason)
        push = getattr(ti, "xcom_push", None)
        if push is not None:
            try:
                push(key=ERROR_XCOM, value={**report, "recovery": outcome.as_dict()})
            except Exception as push_failed:  # reporting must never hide the real failure
                self.log.warning("could not record the error class: %s", push_failed)
        if outcome.alert:
            self.recovery.notify(context, report, outcome)
        if outcome.kind == "skip":
            return AirflowSkipException(f"{outcome.rule}: {outcome.reason} [{report['error_class']}] "
                                        f"{report.get('message')}")
        if outcome.kind == "retry" and isinstance(exc, FluxError) and exc.terminal:
            exc = FluxTransientError(str(exc), error_class=ErrorClass.UNKNOWN, dataset=exc.dataset, step=exc.step,
                                     server_number=exc.server_number, exit_code=exc.exit_code)
        exc.flux_outcome = outcome
        return exc
