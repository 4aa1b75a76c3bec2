"""BcpHook: run SQL Server's bulk copy utility (Microsoft ``bcp`` or FreeTDS ``freebcp``) as a process.

The hook owns the process: it finds the tool, builds its argument list from an
Airflow ``mssql`` connection, runs it in its own process group, logs progress
(rows, bytes, rows/s) as it goes, parses every server message, and kills the
whole group on failure, timeout or ``on_kill``.

Failure detection: any server or client message of severity > 10 fails the run,
whatever the exit code: FreeTDS freebcp 1.3 exits 0 and reports "N rows copied"
after the server raised an error in the middle of a result (checked against
the real freebcp), which would otherwise publish a partial export.

Password handling: FreeTDS ``freebcp`` is given ``-P -`` and reads the password
from its standard input, so the password is never in argv (``/proc/<pid>/cmdline``).
Microsoft's ``bcp`` offers no such way: it gets ``-P <password>`` on its command
line, visible to other users of the host through the process list while it runs
(the docs' Security page). The password is never logged: the logged command
line shows ``-P ***``.

Connection extras (all optional): ``bcp_path`` (the tool to run), ``encrypt``
(bcp 18 ``-Y``: ``mandatory``/``optional``/``strict``), ``trust_server_certificate``
(bcp 18 ``-u``), ``packet_size``, ``tds_version`` (FreeTDS, e.g. ``7.4``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from airflow.sdk.bases.hook import BaseHook

from flux_provider.errors import ErrorClass, FluxError, classify_sqlserver, flux_error
from flux_provider.formats.export_file import TerminatorCounter

TOOLS = ("bcp", "freebcp")  # searched in this order when the connection names none


@dataclass
class ServerMessage:
    number: int
    level: int
    state: int | None
    text: str

    @property
    def error_class(self) -> ErrorClass:
        return classify_sqlserver(self.number, self.text)


@dataclass
class BcpResult:
    rows: int
    exit_code: int
    seconds: float
    tool: str
    messages: list[ServerMessage] = field(default_factory=list)


@dataclass
class BcpCommand:
    argv: list[str]
    stdin: str | None
    env: dict[str, str]
    flavor: str  # "bcp" (Microsoft) or "freebcp" (FreeTDS)

    def redacted(self) -> list[str]:
        out, hide = [], False
        for arg in self.argv:
            out.append("***" if hide and arg != "-" else arg)
            hide = arg == "-P"
        return out


_MSG_FREETDS = re.compile(r"^Msg (-?\d+), Level (\d+)(?:, State (\d+))?")
_MSG_MS = re.compile(r"NativeError = (-?\d+)")
_MS_TEXT = re.compile(r"^Error = (?:\[[^\]]*\])*(.*)$")
_ROWS_COPIED = re.compile(r"^(\d+) rows copied\.")
_PROGRESS = re.compile(r"(?:Total received|Total sent):\s*(\d+)|^(\d+) rows (?:successfully bulk-copied|sent)")


def parse_messages(lines: list[str]) -> list[ServerMessage]:
    """Every server/client message in bcp's output (FreeTDS ``Msg N, Level L`` and Microsoft's
    ``SQLState = ..., NativeError = N`` forms)."""
    messages: list[ServerMessage] = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip("\n")
        freetds = _MSG_FREETDS.match(line)
        ms = _MSG_MS.search(line)
        if freetds:
            number, level = int(freetds.group(1)), int(freetds.group(2))
            state = int(freetds.group(3)) if freetds.group(3) else None
            j = i + 1
            if j < len(lines) and lines[j].startswith("Server '"):
                j += 1
            text = lines[j].strip() if j < len(lines) else ""
            messages.append(ServerMessage(number, level, state, text))
            i = j + 1
            continue
        if ms:
            text = ""
            if i + 1 < len(lines):
                match = _MS_TEXT.match(lines[i + 1].strip())
                text = match.group(1) if match else lines[i + 1].strip()
            messages.append(ServerMessage(int(ms.group(1)), 16, None, text))
            i += 2
            continue
        i += 1
    return messages


def failure_class(messages: list[ServerMessage]) -> tuple[ErrorClass, ServerMessage | None]:
    """The class of a failed run: the first server message (< 20000) wins over client ones."""
    server = [m for m in messages if not 20000 <= m.number < 21000]
    for message in server + [m for m in messages if m not in server]:
        error_class = message.error_class
        if error_class is not ErrorClass.UNKNOWN:
            return error_class, message
    return ErrorClass.UNKNOWN, (messages[0] if messages else None)


class BcpHook(BaseHook):
    """Run ``bcp``/``freebcp`` ``queryout`` against the server of an Airflow ``mssql`` connection.

    :param mssql_conn_id: the connection (host, port, schema = database, login, password).
    :param executable: path or name of the tool; default: the connection's ``bcp_path`` extra,
        else ``bcp`` then ``freebcp`` on PATH.
    :param batch_size: rows per batch (``-b``); also how often bcp reports progress.
    :param packet_size: network packet size in bytes (bcp ``-a``, freebcp ``-A``).
    :param max_errors: ``-m``; error_file: ``-e``; hints: ``-h``.
    """

    conn_name_attr = "mssql_conn_id"
    default_conn_name = "mssql_default"
    conn_type = "mssql"
    hook_name = "SQL Server bulk copy (bcp)"

    def __init__(
        self,
        mssql_conn_id: str = default_conn_name,
        *,
        executable: str | None = None,
        batch_size: int | None = None,
        packet_size: int | None = None,
        max_errors: int | None = None,
        error_file: str | None = None,
        hints: str | None = None,
        log_every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__()
        self.mssql_conn_id = mssql_conn_id
        self.executable, self.batch_size, self.packet_size = executable, batch_size, packet_size
        self.max_errors, self.error_file, self.hints = max_errors, error_file, hints
        self.log_every, self.clock = log_every, clock
        self._proc: subprocess.Popen | None = None

    # ------------------------------------------------------------ command line
    def find_executable(self, extra: dict) -> tuple[str, str]:
        """(path, flavor) of the bcp tool to run."""
        candidates = [self.executable or extra.get("bcp_path")] if (self.executable or extra.get("bcp_path")) else TOOLS
        for candidate in candidates:
            path = shutil.which(candidate) if candidate and os.sep not in candidate else candidate
            if path and os.access(path, os.X_OK):
                flavor = "freebcp" if os.path.basename(path).startswith("freebcp") else "bcp"
                return path, flavor
        raise flux_error(
            f"no bulk copy tool found (looked for {', '.join(c for c in candidates if c)}). Install Microsoft's "
            "mssql-tools18 (bcp) or FreeTDS (Debian: apt-get install freetds-bin), set the connection extra "
            "'bcp_path', or use engine='dbapi'",
            error_class=ErrorClass.CONFIG,
            step="export",
        )

    def build_command(self, query: str, out_path: str, *, field_terminator: str, row_terminator: str) -> BcpCommand:
        conn = self.get_connection(self.mssql_conn_id)
        extra = conn.extra_dejson
        path, flavor = self.find_executable(extra)
        port = conn.port or 1433
        argv = [path, query, "queryout", out_path, "-c", "-t", field_terminator, "-r", row_terminator]
        env = {k: v for k, v in os.environ.items()}
        if flavor == "freebcp":
            argv += ["-S", f"{conn.host}:{port}"]
            if conn.schema:
                argv += ["-D", conn.schema]
            argv += ["-U", conn.login or "", "-P", "-"]
            stdin = (conn.password or "") + "\n"
            packet_flag = "-A"
            if extra.get("tds_version"):
                env["TDSVER"] = str(extra["tds_version"])
        else:
            argv += ["-S", f"{conn.host},{port}"]
            if conn.schema:
                argv += ["-d", conn.schema]
            argv += ["-U", conn.login or "", "-P", conn.password or ""]
            stdin = None
            packet_flag = "-a"
            encrypt = str(extra.get("encrypt", "")).lower()
            if encrypt:
                argv += [
                    "-Y"
                    + {
                        "mandatory": "m",
                        "optional": "o",
                        "strict": "s",
                        "true": "m",
                        "false": "o",
                        "yes": "m",
                        "no": "o",
                    }.get(encrypt, encrypt[:1])
                ]
            if str(extra.get("trust_server_certificate", "")).lower() in ("1", "true", "yes"):
                argv += ["-u"]
        packet_size = self.packet_size or extra.get("packet_size")
        for flag, value in (
            ("-b", self.batch_size),
            (packet_flag, packet_size),
            ("-m", self.max_errors),
            ("-e", self.error_file),
            ("-h", self.hints),
        ):
            if value not in (None, ""):
                argv += [flag, str(value)]
        return BcpCommand(argv=argv, stdin=stdin, env=env, flavor=flavor)

    # ------------------------------------------------------------ running
    def export(
        self, query: str, out_path: str, *, field_terminator: str, row_terminator: str, dataset: str | None = None
    ) -> BcpResult:
        """Run ``queryout`` into ``out_path``. Raises a classified FluxError on failure."""
        command = self.build_command(query, out_path, field_terminator=field_terminator, row_terminator=row_terminator)
        self.log.info("running %s", " ".join(_shell_quote(a) for a in command.redacted()))
        start = self.clock()
        lines: list[str] = []
        progress = _Progress(self, Path(out_path), start, row_terminator)
        self._proc = subprocess.Popen(
            command.argv,
            stdin=subprocess.PIPE if command.stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=command.env,
            start_new_session=True,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        try:
            if command.stdin is not None:
                self._proc.stdin.write(command.stdin)
                self._proc.stdin.close()
            progress.start()
            for line in self._proc.stdout:
                lines.append(line)
                progress.line(line)
            exit_code = self._proc.wait()
        finally:
            progress.stop()
            self.kill()
        seconds = self.clock() - start
        messages = parse_messages(lines)
        rows = next((int(m.group(1)) for m in map(_ROWS_COPIED.match, reversed(lines)) if m), None)
        # FreeTDS freebcp 1.3 exits 0 and reports "N rows copied" even when the server raised an
        # error in the middle of the result (a partial export): any error message fails the run.
        errors = [m for m in messages if m.level > 10]
        if exit_code != 0 or rows is None or errors:
            error_class, message = failure_class(messages)
            detail = (
                f"Msg {message.number}: {message.text}"
                if message
                else (" ".join(line.strip() for line in lines[-5:]) or "no output")
            )
            raise flux_error(
                f"{command.flavor} exited with code {exit_code}: {detail}",
                error_class=error_class,
                dataset=dataset,
                step="export",
                server_number=message.number if message else None,
                exit_code=exit_code,
            )
        self.log.info(
            "%s copied %d rows in %.1fs (%.0f rows/s)", command.flavor, rows, seconds, rows / seconds if seconds else 0
        )
        return BcpResult(rows=rows, exit_code=exit_code, seconds=seconds, tool=command.flavor, messages=messages)

    def kill(self, grace: float = 5.0) -> None:
        """Terminate the bcp process group (SIGTERM, then SIGKILL); safe to call at any time."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(grace)
        except ProcessLookupError:
            pass


class _Progress:
    """Logs rows so far, MB written and throughput every ``log_every`` seconds.

    freebcp prints nothing until it ends, so rows are counted from the file as it
    grows (only the bytes appended since the last report are read) unless the tool
    reports them itself (Microsoft's bcp prints a line per batch).
    """

    def __init__(self, hook: BcpHook, path: Path, start: float, row_terminator: str):
        self.hook, self.path, self.started = hook, path, start
        self.reported_rows: int | None = None
        self._rows, self._offset = TerminatorCounter(row_terminator.encode()), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bcp-progress", daemon=True)

    def line(self, line: str) -> None:
        match = _PROGRESS.search(line)
        if match:
            self.reported_rows = int(match.group(1) or match.group(2))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def count(self) -> int:
        """Rows in the file so far (reads only what was appended since the last call).

        Only a regular file is read: reading a named pipe (streaming mode) would take the data
        away from its real reader, which logs its own progress.
        """
        if not self.path.is_file():
            return self._rows.count
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                while block := fh.read(1 << 22):
                    self._rows.feed(block)
                    self._offset += len(block)
        except FileNotFoundError:  # removed between the check and the open
            pass
        return self._rows.count

    def _run(self) -> None:
        while not self._stop.wait(self.hook.log_every):
            elapsed = max(self.hook.clock() - self.started, 1e-9)
            rows = self.reported_rows if self.reported_rows is not None else self.count()
            self.hook.log.info(
                "bcp running %.0fs: %d rows (%.0f rows/s), %.1f MB written (%.1f MB/s)",
                elapsed,
                rows,
                rows / elapsed,
                self._offset / 1e6,
                self._offset / 1e6 / elapsed,
            )


def _shell_quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else repr(arg)


__all__ = ["BcpHook", "BcpResult", "BcpCommand", "ServerMessage", "FluxError", "parse_messages"]
