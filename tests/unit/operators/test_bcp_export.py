"""BcpExportOperator without a source: what a new try removes of the tries before it."""

from __future__ import annotations

from types import SimpleNamespace

from flux_provider.operators.bcp_export import BcpExportOperator


def test_a_new_try_removes_what_killed_earlier_tries_left(tmp_path):
    """A try killed by SIGKILL leaves its named pipe (streaming) or .partial file; the next try of the same
    task removes them, and never another task's files or its own current ones."""
    import os

    op = BcpExportOperator(
        task_id="export_upload", dataset="events", schema="dbo", table="events", staging_dir=str(tmp_path)
    )
    folder = tmp_path / "events" / "run_1"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "export_upload.try1.bcp.fifo")
    for name in ("export_upload.try1.bcp.partial", "export_upload.try2.bcp", "other.try1.bcp"):
        (folder / name).write_bytes(b"x")
    ti = SimpleNamespace(run_id="run_1", try_number=3, map_index=-1)
    final, _ = op._paths({"ti": ti})
    assert final == folder / "export_upload.try3.bcp"
    assert sorted(p.name for p in folder.iterdir()) == ["other.try1.bcp"]
