"""Rule-based error recovery ("business rules"), one mechanism for every flux operator.

A data set's spec lists rules, in order; the first whose ``<match>`` fits the
failure decides (error class, SQL Server message number, exit code, a regular
expression on the message, the step; every given field must match). Actions:

* ``retry count= delaySeconds= backoff= maxDelaySeconds= jitter=``: try again after
  ``delay * backoff ** (try - 1)`` seconds (at most ``maxDelaySeconds``, +-20%
  with jitter) while ``try <= count``; then the task fails;
* ``throttleDown factor=``: ask the throttle controller to cut the data set's
  pool to ``floor(slots * factor)`` (it reads the request with the failure's
  ``flux_error`` XCom);
* ``fail``: no more tries; ``skip reason=``: the task is skipped, with the reason;
* ``alert``: notify the spec's ``<alerts>`` (e-mail through Airflow's
  ``SmtpNotifier``, webhooks through :class:`WebhookNotifier`) with the data set,
  the step, the error class and the log URL.

After the data set's rules (and without any) the default applies: a terminal
error class (login, permission, missing object, syntax, data, config) fails at
once and alerts; anything else gets the reference scheduler's 5 retries a
minute apart, then fails and alerts (:data:`DEFAULT_RULES`).

How it plugs into Airflow: :class:`~flux_provider.operators.base.FluxOperator`
calls :meth:`Recovery.decide` when ``run`` fails: it logs the classified error,
the rule and the action, records them in the ``flux_error`` XCom, raises a
skip, sends alerts, and makes a failure that a rule retries retryable. The
retry itself (count, delay) is Airflow's: the operator's ``retry_policy`` is a
:class:`RecoveryPolicy` that answers from the same decision, so the delays are
visible as ordinary retries in the UI.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from flux_provider.errors import Decision, ErrorRecord
from flux_provider.rules import (
    DEFAULT_RULES,
    Action,
    Alert,
    Fail,
    Match,
    Retry,
    Rule,
    Skip,
    ThrottleDown,
    matches,
    max_retries,
)

log = logging.getLogger(__name__)


def _record(report: ErrorRecord | dict) -> ErrorRecord:
    return report if isinstance(report, ErrorRecord) else ErrorRecord.from_json(report)


@dataclass(frozen=True)
class Outcome:
    """What the rules decided for one failed try."""

    kind: Literal["retry", "fail", "skip"]
    rule: str  # the rule's name or "rule N"
    reason: str
    delay: float | None = None  # seconds until the next try (retry)
    alert: bool = False
    throttle_down: float | None = None

    def decision(self) -> Decision:
        """The record of this outcome that the try's :class:`~flux_provider.errors.ErrorRecord` keeps."""
        return Decision(
            action=self.kind,
            rule=self.rule,
            reason=self.reason,
            delay_seconds=self.delay,
            alert=self.alert,
            throttle_down=self.throttle_down,
        )


@dataclass
class Recovery:
    """The rules of one data set (and where its alerts go)."""

    rules: Sequence[Rule] = DEFAULT_RULES
    emails: Sequence[str] = ()
    webhooks: Sequence[str] = ()
    smtp_conn_id: str = "smtp_default"
    rng: random.Random = field(default_factory=random.Random, repr=False)

    @property
    def max_retries(self) -> int:
        """What the task's ``retries`` must allow for every retry rule (the default's 5 included)."""
        return max_retries(self.rules)

    def rule_for(self, report: ErrorRecord | dict) -> tuple[int, Rule] | None:
        """The first of the data set's rules that matches, else the default rule (index 0)."""
        record = _record(report)
        for index, rule in enumerate(self.rules, 1):
            if rule is not DEFAULT_RULES[0] and matches(rule.match, record):
                return index, rule
        return None

    def decide(self, report: ErrorRecord | dict, try_number: int) -> Outcome:
        record = _record(report)
        found = self.rule_for(record)
        if found is None:
            if record.terminal:
                return Outcome(
                    "fail", "default", f"{record.error_class} errors cannot heal by retrying: fail fast", alert=True
                )
            found = (0, DEFAULT_RULES[0])
        index, rule = found
        name = rule.name or f"rule {index}"
        by_type = {type(a): a for a in rule.actions}
        alert = Alert in by_type
        throttle = by_type[ThrottleDown].factor if ThrottleDown in by_type else None
        if Skip in by_type:
            return Outcome("skip", name, by_type[Skip].reason, alert=alert, throttle_down=throttle)
        if Retry in by_type:
            return self._retry(by_type[Retry], try_number, name, alert, throttle, default=rule is DEFAULT_RULES[0])
        return Outcome("fail", name, "fail fast", alert=alert, throttle_down=throttle)

    def _retry(self, retry: Retry, try_number: int, name: str, alert: bool, throttle, *, default: bool) -> Outcome:
        if try_number > retry.count:
            return Outcome(
                "fail", name, f"{retry.count} retries used: fail", alert=alert or default, throttle_down=throttle
            )
        delay = float(retry.delay_seconds) * float(retry.backoff) ** (try_number - 1)
        if retry.max_delay_seconds:
            delay = min(delay, float(retry.max_delay_seconds))
        if retry.jitter:
            delay *= self.rng.uniform(0.8, 1.2)
        return Outcome(
            "retry",
            name,
            f"retry {try_number}/{retry.count} in {delay:.0f}s",
            delay=round(delay, 1),
            alert=alert and not default,
            throttle_down=throttle,
        )

    # ------------------------------------------------------------------ alerts
    def notify(self, context, report: ErrorRecord | dict, outcome: Outcome) -> None:
        ti = context.get("ti") if hasattr(context, "get") else None
        record = _record(report)
        payload = {
            "dataset": record.dataset,
            "step": record.step,
            "error_class": record.error_class,
            "message": record.message,
            "rule": outcome.rule,
            "action": outcome.kind,
            "reason": outcome.reason,
            "dag_id": getattr(ti, "dag_id", None),
            "run_id": getattr(ti, "run_id", None),
            "task_id": getattr(ti, "task_id", None),
            "try_number": getattr(ti, "try_number", None),
            "log_url": getattr(ti, "log_url", None),
        }
        subject = (
            f"[flux] {payload['dataset']} {payload['step']}: {payload['error_class']} -> {outcome.kind} "
            f"({outcome.rule})"
        )
        send_alert(subject, payload, self.emails, self.webhooks, context, smtp_conn_id=self.smtp_conn_id)


def send_alert(subject: str, payload: dict, emails, webhooks, context, *, smtp_conn_id: str = "smtp_default") -> None:
    """POST ``payload`` to each webhook and e-mail it to ``emails``; a channel that fails is logged, never raised
    (an alert must not change what happens to the run)."""
    for url in webhooks:
        try:
            notifier = WebhookNotifier(url, payload)
            notifier.render_template_fields(context or {})
            notifier.notify(context or {})
        except Exception as exc:
            log.warning("alert to %s failed: %s", url, exc)
    if not emails:
        return
    body = "<br>".join(f"<b>{k}</b>: {v}" for k, v in payload.items())
    try:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        SmtpNotifier(
            from_email=None, to=list(emails), smtp_conn_id=smtp_conn_id, subject=subject, html_content=body
        ).notify(context or {})
        return
    except Exception as exc:
        # an executor callback (a deadline's) may not read connections in Airflow 3: Airflow's [smtp] settings
        log.info("e-mail through %s not possible (%s): using Airflow's [smtp] settings", smtp_conn_id, exc)
    try:
        _mail_with_smtp_settings(subject, body, list(emails))
    except Exception as exc:
        log.warning("alert e-mail to %s failed: %s", ", ".join(emails), exc)


def _mail_with_smtp_settings(subject: str, html: str, to: list[str]) -> None:
    """Send an HTML mail with Airflow's ``[smtp]`` settings (host, port, TLS, sender; no login)."""
    import smtplib
    from email.message import EmailMessage

    from airflow.sdk.configuration import conf

    message = EmailMessage()
    message["Subject"], message["To"] = subject, ", ".join(to)
    message["From"] = conf.get("smtp", "smtp_mail_from", fallback="airflow@localhost")
    message.set_content(html, subtype="html")
    host, port = conf.get("smtp", "smtp_host", fallback="localhost"), conf.getint("smtp", "smtp_port", fallback=25)
    client = smtplib.SMTP_SSL if conf.getboolean("smtp", "smtp_ssl", fallback=False) else smtplib.SMTP
    with client(host, port, timeout=conf.getint("smtp", "smtp_timeout", fallback=30)) as smtp:
        if conf.getboolean("smtp", "smtp_starttls", fallback=False):
            smtp.starttls()
        smtp.send_message(message)


def _base_notifier():
    from airflow.sdk import BaseNotifier

    return BaseNotifier


class WebhookNotifier(_base_notifier()):
    """POSTs a JSON alert to a URL (an Airflow notifier: also usable as ``on_failure_callback``).
    The URL is templated (e.g. ``{{ var.value.alert_webhook }}`` keeps a secret URL out of the spec)."""

    template_fields = ("url",)

    def __init__(self, url: str, payload: dict | None = None, timeout: float = 10.0):
        super().__init__()
        self.url, self.payload, self.timeout = url, payload, timeout

    def notify(self, context) -> None:
        payload = self.payload
        if payload is None:
            ti = context.get("ti")
            payload = {
                "dag_id": getattr(ti, "dag_id", None),
                "task_id": getattr(ti, "task_id", None),
                "run_id": getattr(ti, "run_id", None),
                "log_url": getattr(ti, "log_url", None),
            }
        request = urllib.request.Request(
            self.url,
            data=json.dumps(payload, default=str).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (URL from the spec)
            response.read()


def _retry_policy_base():
    from airflow.sdk.definitions.retry_policy import RetryPolicy

    return RetryPolicy


@dataclass(frozen=True)
class RetryReason:
    """What a retried try's ``retry_reason`` says, the one text Airflow keeps per try (500 characters, in
    ``task_instance_history``): ``[class query=s throttleDown=f] rule: decision | message``. Unlike the
    ``flux_error`` and ``flux_source`` XComs, which the next try clears, it stays with its own try: the throttle
    controller reads each try's class (and an export's query time) there, through :meth:`from_text`, the one
    reader of what :meth:`to_text` writes."""

    error_class: str
    rule: str | None
    decision: str | None
    message: str
    throttle_down: float | None = None
    query_seconds: float | None = None  # an export's: how long its query held the source before it failed

    LIMIT = 500

    @classmethod
    def of(cls, record: ErrorRecord, outcome: Outcome, query_seconds: float | None = None) -> RetryReason:
        return cls(
            record.error_class, outcome.rule, outcome.reason, record.message or "", outcome.throttle_down, query_seconds
        )

    def to_text(self) -> str:
        query = f" query={self.query_seconds:g}" if self.query_seconds is not None else ""
        cut = f" throttleDown={self.throttle_down:g}" if self.throttle_down else ""
        return f"[{self.error_class}{query}{cut}] {self.rule}: {self.decision} | {self.message}"[: self.LIMIT]

    @classmethod
    def from_text(cls, text: str | None) -> RetryReason | None:
        """The reason :meth:`to_text` wrote, else None (a reason another policy wrote, or none)."""
        head, sep, rest = (text or "").partition("] ")
        words = head[1:].split(" ") if head.startswith("[") and sep else []
        if not words or not words[0].replace("_", "").isalpha() or not words[0].islower():
            return None
        numbers = {}
        for word in words[1:]:
            name, _, value = word.partition("=")
            if name not in ("throttleDown", "query"):
                return None
            numbers[name] = float(value)
        factor, query = numbers.get("throttleDown"), numbers.get("query")
        rule, sep, after = rest.partition(": ")
        decision, sep2, message = after.partition(" | ")
        if not (sep and sep2) or "|" in rule:
            return cls(words[0], None, None, rest, factor, query)
        return cls(words[0], rule, decision, message, factor, query)


def rule_try(try_number: int, max_tries: int | None, retries: int | None) -> int:
    """The try's number as the recovery rules count it: Airflow's ``try_number`` less the tries before the
    task's current budget (``max_tries - retries``, as Airflow reckons its first try after a clear). A try lost
    to the orchestrator and given back raised ``max_tries`` (:mod:`flux_provider.throttle.lost`): it is not
    counted."""
    before = (max_tries or 0) - (retries or 0) if max_tries is not None and retries is not None else 0
    return max(1, try_number - max(0, before))


class RecoveryPolicy(_retry_policy_base()):
    """Airflow's retry policy for a flux task: retries and delays as the data set's rules decided."""

    def __init__(self, recovery: Recovery):
        self.recovery = recovery

    def evaluate(self, exception, try_number, max_tries, context=None):
        from airflow.sdk.definitions.retry_policy import RetryDecision

        outcome = getattr(exception, "flux_outcome", None)
        record = getattr(exception, "flux_record", None) or ErrorRecord.of(exception)
        if outcome is None:  # not through FluxOperator: decide here
            task = getattr((context or {}).get("ti"), "task", None)
            outcome = self.recovery.decide(record, rule_try(try_number, max_tries, getattr(task, "retries", None)))
        reason = RetryReason.of(record, outcome, getattr(exception, "flux_query_seconds", None)).to_text()
        if outcome.kind == "retry":
            return RetryDecision.retry(delay=dt.timedelta(seconds=outcome.delay or 0), reason=reason)
        return RetryDecision.fail(reason=reason)

    def serialize(self) -> dict:
        return {"rules": len(self.recovery.rules)}


__all__ = [
    "DEFAULT_RULES",
    "Action",
    "Alert",
    "Fail",
    "Match",
    "Outcome",
    "Recovery",
    "RecoveryPolicy",
    "Retry",
    "rule_try",
    "Rule",
    "Skip",
    "ThrottleDown",
    "WebhookNotifier",
    "matches",
    "RetryReason",
    "send_alert",
]
