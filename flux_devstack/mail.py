"""The local stack's mail sink: an SMTP server (aiosmtpd) that keeps every message in a Maildir.

Alerts (recovery rules, freshness deadlines) e-mail through it: the connection ``smtp_default`` and
Airflow's ``[smtp]`` settings point here, and ``<run dir>/mail/`` holds what was sent (read it with
Python's ``mailbox.Maildir``). Nothing leaves the machine.
"""

from __future__ import annotations

import smtplib

from flux_devstack.service import Context, Service

SENDER = "flux-devstack@localhost"


def maildir(ctx: Context):
    return ctx.home("mail") / "Maildir"


class MailSink(Service):
    name = "mail"
    port = "smtp"
    ready_timeout = 30.0

    def command(self, ctx: Context) -> list[str]:
        return [
            ctx.python,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"127.0.0.1:{ctx.ports['smtp']}",
            "-c",
            "aiosmtpd.handlers.Mailbox",
            str(maildir(ctx)),
        ]

    def check(self, ctx: Context) -> str:
        with smtplib.SMTP("127.0.0.1", ctx.ports["smtp"], timeout=5) as smtp:
            smtp.noop()
        return f"SMTP, mail kept in {maildir(ctx)}"

    def connections(self, ctx: Context) -> dict[str, dict]:
        return {
            "smtp_default": {
                "conn_type": "smtp",
                "description": "flux devstack: the mail sink (every message kept in the run directory)",
                "host": "127.0.0.1",
                "port": ctx.ports["smtp"],
                "extra": {"disable_tls": True, "disable_ssl": True, "from_email": SENDER},
            }
        }

    def env(self, ctx: Context) -> dict[str, str]:
        return {"FLUX_MAILDIR": str(maildir(ctx))}
