"""The export's staging folders: one per data set and run, and a run's folder, emptied once its files were
uploaded, is removed by a later export of the data set once it has stayed empty for an hour (never at once:
another part of the run may be about to write into it)."""

from __future__ import annotations

import os
import time

from flux_provider.operators.bcp_export import EMPTY_RUN_FOLDER_AGE, BcpExportOperator
from tests.support.values import context


def test_a_runs_emptied_folder_goes_after_an_hour_and_a_folder_in_use_stays(tmp_path):
    op = BcpExportOperator(task_id="export", dataset="titles", schema="dbo", table="titles", staging_dir=str(tmp_path))
    final, _ = op._paths(context("manual__1"))
    assert final.parent == tmp_path / "titles" / "manual__1"
    hour_ago = time.time() - EMPTY_RUN_FOLDER_AGE - 60
    os.utime(final.parent, (hour_ago, hour_ago))  # run 1's files were uploaded an hour ago: its folder is empty
    busy = tmp_path / "titles" / "manual__2"
    busy.mkdir()
    (busy / "export.try1.bcp").write_bytes(b"x")
    os.utime(busy, (hour_ago, hour_ago))  # an old run that still holds a file
    fresh = tmp_path / "titles" / "manual__3"
    fresh.mkdir()  # emptied a minute ago: a part of that run may still write

    op._paths(context("manual__4"))

    assert sorted(p.name for p in (tmp_path / "titles").iterdir()) == ["manual__2", "manual__3", "manual__4"]
    again, _ = op._paths(context("manual__1"))  # a rerun of run 1 makes its folder anew
    assert again.parent.is_dir()
