"""The s3a filesystem jars that pyspark does not ship.

pyspark bundles Hadoop's client but not ``hadoop-aws``. The only copy on a
package registry reachable here is inside the ``sagemaker_pyspark==1.4.5``
source package (hadoop-aws 3.3.1 + aws-java-sdk-bundle 1.11.901). They are
fetched once with pip, the two jars are extracted, checked against pinned
SHA-256 digests and cached.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SOURCE_PACKAGE = "sagemaker_pyspark==1.4.5"
JARS = {
    "hadoop-aws-3.3.1.jar": "6be50ad8a8b445d2802381b085b2a3ede5c29d353450a6a21f16b2fefa962b6e",
    "aws-java-sdk-bundle-1.11.901.jar": "b87175b32a16544cc1b37cf40390eb375833e62bed67f8ce6cde4b7ad6429ead",
}


def cache_dir() -> Path:
    root = os.environ.get("FLUX_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "flux_provider"
    )
    return Path(root) / "s3a-jars"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _valid(path: Path, expected: str) -> bool:
    return path.is_file() and _sha256(path) == expected


def install_from(sdist: Path, target: Path, jars: dict[str, str] = JARS) -> None:
    """Extract ``jars`` from ``sdist`` into ``target``: each to a temporary file of this process's own, checked
    against its digest, then renamed into place, so setups that run at once never write the same file and a
    jar in ``target`` is always whole."""
    with tarfile.open(sdist, "r|gz") as archive:
        for member in archive:
            name = os.path.basename(member.name)
            if name not in jars or not member.isfile():
                continue
            with tempfile.NamedTemporaryFile(dir=target, prefix=f".{name}.", suffix=".part", delete=False) as dst:
                partial = Path(dst.name)
                with archive.extractfile(member) as src:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        dst.write(block)
            try:
                if _sha256(partial) == jars[name]:
                    partial.replace(target / name)
            finally:
                partial.unlink(missing_ok=True)


def ensure_s3a_jars(target: Path | None = None) -> list[Path]:
    """Return the paths of the s3a jars, fetching and verifying them if needed."""
    target = target or cache_dir()
    paths = [target / name for name in JARS]
    if all(_valid(path, JARS[path.name]) for path in paths):
        return paths
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="flux-jars-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "-d",
            tmp,
            SOURCE_PACKAGE,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(
                f"could not download {SOURCE_PACKAGE} (it carries the s3a jars): "
                f"{done.stderr.strip()[-800:]}\nFix: check that pip can reach PyPI, or put "
                f"{', '.join(JARS)} into {target} by hand."
            )
        (sdist,) = Path(tmp).glob("*.tar.gz")
        install_from(sdist, target)
    for path in paths:
        if not _valid(path, JARS[path.name]):
            raise RuntimeError(
                f"{path} is missing or its SHA-256 differs from the pinned {JARS[path.name]}; "
                f"delete {target} and run again."
            )
    return paths


if __name__ == "__main__":
    for jar in ensure_s3a_jars():
        print(jar)
