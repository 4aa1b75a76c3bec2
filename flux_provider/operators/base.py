"""What every flux operator shares: a failure leaves its classification where the throttle can read it.

Subclasses implement :meth:`FluxOperator.run`; ``execute`` runs it and, when it
fails, pushes the XCom ``flux_error`` (error class, server number, exit code,
step, message; see :meth:`~flux_provider.errors.FluxError.as_dict`) before
re-raising. An exception that is not a FluxError is reported as class
``unknown``. The throttle controller (scheduler side) reads it to tell load
failures from others; the dashboard shows it.
"""

from __future__ import annotations

from airflow.sdk import BaseOperator

from flux_provider.errors import FluxError

ERROR_XCOM = "flux_error"


def error_report(exc: BaseException, *, dataset: str | None, step: str | None) -> dict:
    if isinstance(exc, FluxError):
        return exc.as_dict()
    return {"error_class": "unknown", "terminal": False, "dataset": dataset, "step": step, "server_number": None,
            "exit_code": None, "message": f"{type(exc).__name__}: {exc}"[:2000]}


class FluxOperator(BaseOperator):
    """Base of the flux operators (``dataset`` names the data set; ``step`` the stage)."""

    step: str = "step"

    def run(self, context):
        raise NotImplementedError

    def execute(self, context):
        try:
            return self.run(context)
        except Exception as exc:
            ti = context.get("ti") if hasattr(context, "get") else None
            push = getattr(ti, "xcom_push", None)
            if push is not None:
                try:
                    push(key=ERROR_XCOM, value=error_report(exc, dataset=getattr(self, "dataset", None),
                                                            step=self.step))
                except Exception as push_failed:  # reporting must never hide the real failure
                    self.log.warning("could not record the error class: %s", push_failed)
            raise
