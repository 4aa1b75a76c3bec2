"""BcpHook without a server: argument lists for both tools and output parsing (pure tier).

Microsoft's bcp cannot be installed here (mssql-tools is not in Debian's or
PyPI's registries), so its command line is tested as an argument list: a file
named ``bcp`` stands in for the binary and is never run."""

from __future__ import annotations

import json
import os
import stat

import pytest

from flux_provider.errors import ErrorClass, FluxTerminalError
from flux_provider.hooks.bcp import BcpHook, failure_class, parse_messages

PASSWORD = "p@ss w0rd;'\"$"


@pytest.fixture
def mssql_conn(monkeypatch):
    def set_conn(**extra):
        monkeypatch.setenv(
            "AIRFLOW_CONN_BCP_TEST",
            json.dumps(
                {
                    "conn_type": "mssql",
                    "host": "db.example.internal",
                    "port": 14330,
                    "schema": "media",
                    "login": "etl",
                    "password": PASSWORD,
                    "extra": extra,
                }
            ),
        )
        return "bcp_test"

    return set_conn


def _fake_tool(tmp_path, name):
    path = tmp_path / name
    path.write_text("#!/bin/sh\nexit 99\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_microsoft_bcp_arguments(tmp_path, mssql_conn):
    conn_id = mssql_conn(encrypt="optional", trust_server_certificate="true", packet_size=32576)
    hook = BcpHook(
        conn_id,
        executable=_fake_tool(tmp_path, "bcp"),
        batch_size=5000,
        max_errors=0,
        error_file="/tmp/err.txt",
        hints="ORDER(id ASC)",
    )
    command = hook.build_command("SELECT 1", "/tmp/out.dat", field_terminator="\x1f|~", row_terminator="\x1e|~\n")
    assert command.flavor == "bcp"
    assert command.argv[1:] == [
        "SELECT 1",
        "queryout",
        "/tmp/out.dat",
        "-c",
        "-t",
        "\x1f|~",
        "-r",
        "\x1e|~\n",
        "-S",
        "db.example.internal,14330",
        "-d",
        "media",
        "-U",
        "etl",
        "-P",
        PASSWORD,
        "-Yo",
        "-u",
        "-b",
        "5000",
        "-a",
        "32576",
        "-m",
        "0",
        "-e",
        "/tmp/err.txt",
        "-h",
        "ORDER(id ASC)",
    ]
    assert command.stdin is None
    # The logged form never shows the password.
    assert PASSWORD not in " ".join(command.redacted()) and "***" in command.redacted()


def test_freebcp_arguments_keep_the_password_out_of_argv(tmp_path, mssql_conn):
    conn_id = mssql_conn(tds_version="7.4", packet_size=8192)
    hook = BcpHook(conn_id, executable=_fake_tool(tmp_path, "freebcp"), batch_size=1000)
    command = hook.build_command("SELECT 1", "/tmp/out.dat", field_terminator="|~", row_terminator="~|\n")
    assert command.flavor == "freebcp"
    assert command.argv[1:] == [
        "SELECT 1",
        "queryout",
        "/tmp/out.dat",
        "-c",
        "-t",
        "|~",
        "-r",
        "~|\n",
        "-S",
        "db.example.internal:14330",
        "-D",
        "media",
        "-U",
        "etl",
        "-P",
        "-",
        "-b",
        "1000",
        "-A",
        "8192",
    ]
    assert all(PASSWORD not in arg for arg in command.argv)
    assert command.stdin == PASSWORD + "\n"
    assert command.env["TDSVER"] == "7.4"


def test_the_connection_can_name_the_tool(tmp_path, mssql_conn):
    tool = _fake_tool(tmp_path, "freebcp-1.3")
    path, flavor = BcpHook(mssql_conn(bcp_path=tool)).find_executable({"bcp_path": tool})
    assert (path, flavor) == (tool, "freebcp")


def test_no_tool_says_what_to_install(monkeypatch, mssql_conn):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(Exception, match="apt-get install freetds-bin") as failure:
        BcpHook(mssql_conn()).find_executable({})
    assert "engine='dbapi'" in str(failure.value)


FREETDS_OUTPUT = """\
Msg 208, Level 16, State 1
Server 'sql01', Line 1
\tInvalid object name 'dbo.missing'.
Msg 20018, Level 16
General SQL Server error: Check messages from the SQL Server

Msg 20064, Level 2
Attempt to use Bulk Copy with a non-existent Server table
""".splitlines(keepends=True)


MICROSOFT_OUTPUT = """\
SQLState = S0002, NativeError = 208
Error = [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Invalid object name 'dbo.missing'.
SQLState = 37000, NativeError = 8180
Error = [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Statement(s) could not be prepared.
""".splitlines(keepends=True)


def test_freetds_messages_are_parsed_and_the_server_one_classifies():
    messages = parse_messages(FREETDS_OUTPUT)
    assert [(m.number, m.level, m.state) for m in messages] == [(208, 16, 1), (20018, 16, None), (20064, 2, None)]
    assert messages[0].text == "Invalid object name 'dbo.missing'."
    error_class, message = failure_class(messages)
    assert error_class is ErrorClass.MISSING_OBJECT and message.number == 208


def test_microsoft_messages_are_parsed():
    messages = parse_messages(MICROSOFT_OUTPUT)
    assert [(m.number, m.text) for m in messages] == [
        (208, "Invalid object name 'dbo.missing'."),
        (8180, "Statement(s) could not be prepared."),
    ]
    assert failure_class(messages)[0] is ErrorClass.MISSING_OBJECT


def test_connection_failures_classify_as_connection():
    lines = ["Msg 20009, Level 9\n", "Unable to connect: Adaptive Server is unavailable or does not exist\n"]
    assert failure_class(parse_messages(lines))[0] is ErrorClass.CONNECTION


def test_executable_bit_is_required(tmp_path, mssql_conn):
    path = tmp_path / "bcp"
    path.write_text("")
    os.chmod(path, 0o644)
    with pytest.raises(FluxTerminalError, match="no bulk copy tool found") as failure:
        BcpHook(mssql_conn(), executable=str(path)).find_executable({})
    assert failure.value.error_class is ErrorClass.CONFIG  # a missing tool fails at once: no retries


def test_progress_counts_rows_of_a_growing_file_incrementally(tmp_path, mssql_conn):
    from flux_provider.hooks.bcp import _Progress

    path = tmp_path / "growing.bcp"
    progress = _Progress(BcpHook(mssql_conn()), path, 0.0, "~|\n")
    assert progress.count() == 0  # not created yet
    path.write_bytes(b"1|~a~|\n2|~b~")
    assert progress.count() == 1
    with open(path, "ab") as fh:
        fh.write(b"|\n3|~c~|\n")  # completes a terminator split across two reads
    assert progress.count() == 3


def test_progress_never_reads_a_named_pipe(tmp_path, mssql_conn):
    """Streaming mode exports into a FIFO: reading it would steal rows from the encoder."""
    import threading

    from flux_provider.hooks.bcp import _Progress

    pipe = tmp_path / "export.fifo"
    os.mkfifo(pipe)
    received = []
    reader = threading.Thread(target=lambda: received.append(open(pipe, "rb").read()))
    reader.start()
    with open(pipe, "wb") as writer:
        writer.write(b"1|~a~|\n2|~b~|\n")
        writer.flush()
        assert _Progress(BcpHook(mssql_conn()), pipe, 0.0, "~|\n").count() == 0
    reader.join(timeout=5)
    assert received == [b"1|~a~|\n2|~b~|\n"]
