"""What a spec can reach: a path it names stays in its folder (``..``, an absolute path or a symlink out is
refused, unread), and a webhook is an http(s) URL.

Whether a file was opened is read from Python's audit events (``open``), which every file open in this process
raises, whatever the library that opens it."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from pathlib import Path

import pytest

from flux_provider.specs import SpecError, load_spec
from flux_provider.specs.factory import build_dags
from tests.support.specs import MINIMAL, flux_specs, write

_opened: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


@contextlib.contextmanager
def files_opened():
    global _opened
    _opened = seen = []
    try:
        yield seen
    finally:
        _opened = None


def layout(tmp_path: Path) -> tuple[Path, Path]:
    """(the spec folder dags/specs, a secret outside it with a transform's and a calendar's shape)."""
    specs, outside = tmp_path / "dags" / "specs", tmp_path / "outside"
    (specs / "transforms").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.hql").write_text("SELECT 'the password is hunter2'")
    (outside / "secret.xml").write_text('<calendar timezone="UTC"><holiday date="2026-12-25"/></calendar>')
    return specs, outside


def transform_spec(specs: Path, file: str) -> Path:
    text = MINIMAL.format(name="events")
    inline = "<transform>SELECT id, CAST(at AS STRING) AS day FROM {{ staging }}</transform>"
    assert inline in text
    return write(specs, text.replace(inline, f'<transform file="{file}"/>'))


def calendar_spec(specs: Path, file: str) -> Path:
    text = MINIMAL.format(name="events").replace("</schedule>", f'</schedule><calendar file="{file}"/>')
    return write(specs, text)


def escapes(specs: Path, outside: Path, kind: str) -> str:
    """The ``file=`` of each way out of the folder, for a secret of ``kind`` (hql, xml)."""
    return {
        "dots": f"../../outside/secret.{kind}",
        "absolute": str(outside / f"secret.{kind}"),
        "symlink": _link(specs / "transforms" / f"link.{kind}", outside / f"secret.{kind}", f"transforms/link.{kind}"),
        "folder symlink": _link(specs / "shared", outside, f"shared/secret.{kind}"),
    }


def _link(link: Path, target: Path, name: str) -> str:
    if not link.is_symlink():
        link.symlink_to(target)
    return name


@pytest.mark.parametrize("way", ["dots", "absolute", "symlink", "folder symlink"])
@pytest.mark.parametrize(
    "kind, spec_for, element", [("hql", transform_spec, "transform"), ("xml", calendar_spec, "calendar")]
)
def test_a_path_out_of_the_spec_folder_is_a_spec_error_and_the_file_is_never_opened(
    tmp_path, way, kind, spec_for, element
):
    specs, outside = layout(tmp_path)
    path = spec_for(specs, escapes(specs, outside, kind)[way])
    with files_opened() as opened, pytest.raises(SpecError) as refused:
        load_spec(path)
    error = refused.value
    assert error.element == f"{element} file=" and error.line is not None
    assert f"is outside the spec's folder {specs.resolve()}" in error.detail
    assert str(outside / f"secret.{kind}") in error.detail  # where it leads, after symlinks
    assert f"move the file into {specs.resolve()}" in error.fix
    assert str(path) in opened  # the spec itself was read: the watch works
    assert not [p for p in opened if "secret" in p or "outside" in p], opened


def test_dags_skip_the_escaping_spec_without_reading_its_file(tmp_path, caplog):
    specs, outside = layout(tmp_path)
    transform_spec(specs, "../../outside/secret.hql")
    with files_opened() as opened, caplog.at_level(logging.ERROR):
        dags = build_dags(specs.parent)
    assert dags == {}
    assert "outside the spec's folder" in caplog.text and "events.xml" in caplog.text
    assert not [p for p in opened if "outside" in p]


def test_a_symlink_that_stays_inside_the_folder_is_followed(tmp_path):
    specs, _ = layout(tmp_path)
    (specs / "transforms" / "v2.hql").write_text("SELECT id, CAST(at AS STRING) AS day FROM {{ staging }}")
    (specs / "transforms" / "current.hql").symlink_to("v2.hql")
    spec = load_spec(transform_spec(specs, "transforms/current.hql"))
    assert spec.hive.transform_file == (specs / "transforms" / "v2.hql").resolve()
    assert "CAST(at AS STRING)" in spec.hive.transform_sql


def test_the_checker_refuses_it_with_the_line_and_the_fix(tmp_path):
    specs, _ = layout(tmp_path)
    transform_spec(specs, "../../outside/secret.hql")
    checked = flux_specs("check", specs)
    assert checked.returncode == 1
    where = re.escape(str(specs / "events.xml"))
    assert re.search(
        rf"^error: \[config\] data set 'events' spec: {where}:\d+: <transform file=>: the transform file "
        r"'\.\./\.\./outside/secret\.hql' is outside the spec's folder .*Fix: move the file into",
        checked.stdout,
        re.MULTILINE,
    ), checked.stdout


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://host/x", "https://", "hooks.example.com/x"])
def test_a_webhook_is_an_http_or_https_url(tmp_path, url):
    text = MINIMAL.format(name="events").replace(
        "<owner>team</owner>", f"<owner>team</owner><alerts><webhook>{url}</webhook></alerts>"
    )
    with pytest.raises(SpecError, match=r"events\.xml:\d+: <webhook>: .* is not an http or https URL"):
        load_spec(write(tmp_path, text))
    good = text.replace(url, "https://hooks.example.com/flux")
    assert load_spec(write(tmp_path, good)).webhooks == ("https://hooks.example.com/flux",)
