"""The s3a jars' install step: setups that run at once (two clones on one machine) never write one file, and
a jar in the cache is always whole. The sdist here is a small one made by the test, holding two files under
the jars' names (the real one is a 200 MB download)."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import tarfile

from flux_devstack.jars import install_from


def make_sdist(path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"sagemaker_pyspark-1.4.5/jars/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def install_many(sdist, target, jars, times: int) -> None:
    for _ in range(times):
        install_from(sdist, target, jars)


def test_two_setups_at_once_install_whole_jars_and_leave_no_partial_file(tmp_path):
    files = {"a.jar": b"a" * 3_000_000, "b.jar": bytes(range(256)) * 4000}
    jars = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    make_sdist(tmp_path / "sdist.tar.gz", files)
    target = tmp_path / "cache"
    target.mkdir()
    context = multiprocessing.get_context("fork")
    setups = [context.Process(target=install_many, args=(tmp_path / "sdist.tar.gz", target, jars, 8)) for _ in range(2)]
    for setup in setups:
        setup.start()
    for setup in setups:
        setup.join(120)
    assert [s.exitcode for s in setups] == [0, 0]
    assert sorted(p.name for p in target.iterdir()) == ["a.jar", "b.jar"]  # no .part left by either
    assert {name: hashlib.sha256((target / name).read_bytes()).hexdigest() for name in files} == jars


def test_a_jar_whose_digest_differs_is_never_put_in_place(tmp_path):
    make_sdist(tmp_path / "sdist.tar.gz", {"a.jar": b"tampered"})
    target = tmp_path / "cache"
    target.mkdir()
    install_from(tmp_path / "sdist.tar.gz", target, {"a.jar": hashlib.sha256(b"genuine").hexdigest()})
    assert list(target.iterdir()) == []
