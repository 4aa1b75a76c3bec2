"""Cut an export stream (bcp or CSV) into Hive text chunks that end at row boundaries.

Blocks of whole rows are encoded on ``workers`` threads at once (the encoder's
Arrow kernels release the GIL) and come back in order. Memory is bounded by
construction: ``workers + 1`` blocks queued or encoding, each with about two
more blocks of Arrow buffers while a pass runs (more only when many bytes need
escaping), and the chunk being filled (``target_bytes`` plus one encoded
block): about ``3 * (workers + 1) * block_size + target_bytes``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import BinaryIO

from flux_provider.formats.hive_text import BadRow, BcpToHive, CsvToHive


def return_big_buffers_to_the_os(threshold: int = 2**20) -> bool:
    """Have glibc serve every allocation above ``threshold`` with its own mmap.

    glibc raises its mmap threshold as large blocks are freed, after which 16-64 MB
    buffers come from the heap, fragment it and are never returned: the RSS of a
    long upload creeps up with the data size. A fixed threshold keeps it flat.
    Returns False where this is not glibc (nothing changes then).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, threshold))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


@dataclass
class Chunk:
    index: int
    data: bytes  # what is uploaded (gzip-compressed if asked)
    rows: int
    raw_bytes: int  # Hive text bytes before compression

    @cached_property
    def crc32(self) -> int:
        """CRC32 of ``data``: computed on first use, in the upload thread (zlib releases the GIL)."""
        return zlib.crc32(self.data)


class _ChunkBuilder:
    """A chunk's pieces. With gzip every piece becomes a gzip member of its own, compressed on
    ``pool`` while the next blocks encode (a gzip file may hold several members; gzip, Hadoop and
    so Hive read them as one stream)."""

    def __init__(self, index: int, gzip_level: int | None, pool: Executor | None = None):
        self.index, self.rows, self.raw_bytes, self.parts = index, 0, 0, []
        self.gzip_level, self.pool = gzip_level, pool

    def add(self, encoded: bytes, rows: int) -> None:
        self.rows += rows
        self.raw_bytes += len(encoded)
        if self.gzip_level is None:
            self.parts.append(encoded)
        elif self.pool is None:
            self.parts.append(zlib.compress(encoded, self.gzip_level, 31))
        else:
            self.parts.append(self.pool.submit(zlib.compress, encoded, self.gzip_level, 31))

    def build(self) -> Chunk:
        data = b"".join(part.result() if isinstance(part, Future) else part for part in self.parts)
        self.parts = []
        return Chunk(self.index, data, self.rows, self.raw_bytes)


def _after_rows(data: bytes, start: int, rows: int) -> int:
    """The offset just after ``rows`` Hive rows of ``data`` from ``start``."""
    for _ in range(rows):
        start = data.find(b"\n", start) + 1
    return start


def _numbered(blocks: Iterator[tuple[memoryview, int]]) -> Iterator[tuple[memoryview, int]]:
    """``blocks``, with a bad row's number counted from the start of the stream."""
    before = 0
    try:
        for encoded, rows in blocks:
            yield encoded, rows
            before += rows
    except BadRow as exc:
        raise ValueError(f"row {before + exc.row} {exc.detail}") from exc


def chunks(
    stream: BinaryIO,
    encoder: BcpToHive | CsvToHive,
    *,
    target_bytes: int | None = 64 * 2**20,
    target_rows: int | None = None,
    gzip_level: int | None = None,
    block_size: int = 8 * 2**20,
    workers: int = 2,
) -> Iterator[Chunk]:
    """Chunks of Hive text from an export ``stream`` (a file or a pipe; bcp or CSV), in order.

    A chunk closes when its Hive text reaches ``target_bytes`` or it holds ``target_rows`` rows.
    ``workers`` threads encode blocks of ``block_size`` bytes at once; with ``gzip_level`` as many
    compress them, each piece of a chunk a gzip member of its own.
    Raises ValueError on a truncated stream or a row that does not have the expected columns.
    """
    if not target_bytes and not target_rows:
        raise ValueError("give target_bytes and/or target_rows")
    pool = ThreadPoolExecutor(workers, thread_name_prefix="gzip") if gzip_level is not None and workers > 1 else None
    try:
        builder = _ChunkBuilder(0, gzip_level, pool)
        for encoded, rows in _numbered(encoder.encode_stream(stream, block_size, workers)):
            start, text = 0, None
            while rows:
                take = min(rows, target_rows - builder.rows) if target_rows else rows
                if take == rows:
                    end = len(encoded)
                else:  # cut at a row: Hive text has exactly one newline per row
                    text = text if text is not None else bytes(encoded)
                    end = _after_rows(text, start, take)
                builder.add(encoded[start:end], take)
                start, rows = end, rows - take
                if (target_rows and builder.rows >= target_rows) or (
                    target_bytes and builder.raw_bytes >= target_bytes
                ):
                    yield builder.build()
                    builder = _ChunkBuilder(builder.index + 1, gzip_level, pool)
        if builder.rows:
            yield builder.build()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
