"""Cut a bcp export stream into Hive text chunks that end at row boundaries.

Memory is bounded by construction: one read block, the bytes of a row cut at the
block's end, the encoded block (about the block's size, more only when many
bytes need escaping) and the chunk being filled (``target_bytes`` plus one
encoded block at most).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import BinaryIO

from flux_provider.formats.hive_text import BcpToHive

MAX_ROW_BYTES = 256 * 2**20  # a row longer than this means the row terminator is wrong


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
    data: bytes        # what is uploaded (gzip-compressed if asked)
    rows: int
    raw_bytes: int     # Hive text bytes before compression

    @cached_property
    def sha256(self) -> str:
        """Computed on first use, in the upload thread (hashlib releases the GIL)."""
        return hashlib.sha256(self.data).hexdigest()


class _ChunkBuilder:
    def __init__(self, index: int, gzip_level: int | None):
        self.index, self.rows, self.raw_bytes, self.parts = index, 0, 0, []
        self._gzip = zlib.compressobj(gzip_level, zlib.DEFLATED, 31) if gzip_level is not None else None

    def add(self, encoded: bytes, rows: int) -> None:
        self.rows += rows
        self.raw_bytes += len(encoded)
        self.parts.append(self._gzip.compress(encoded) if self._gzip else encoded)

    def build(self) -> Chunk:
        if self._gzip:
            self.parts.append(self._gzip.flush())
        data = b"".join(self.parts)
        self.parts = []
        return Chunk(self.index, data, self.rows, self.raw_bytes)


def _split_rows(block: bytes, terminator: bytes, rows: int) -> tuple[bytes, bytes]:
    """(first ``rows`` rows of ``block``, the rest)."""
    pos = -1
    for _ in range(rows):
        pos = block.find(terminator, pos + 1)
    end = pos + len(terminator)
    return block[:end], block[end:]


def chunks(stream: BinaryIO, encoder: BcpToHive, *, target_bytes: int | None = 64 * 2**20,
           target_rows: int | None = None, gzip_level: int | None = None,
           block_size: int = 16 * 2**20) -> Iterator[Chunk]:
    """Chunks of Hive text from a bcp export ``stream`` (a file or a pipe), in order.

    A chunk closes when its Hive text reaches ``target_bytes`` or it holds ``target_rows`` rows.
    Raises ValueError on a truncated stream or a row that does not have the expected columns.
    """
    if not target_bytes and not target_rows:
        raise ValueError("give target_bytes and/or target_rows")
    rt = encoder.rt
    pending = b""
    builder = _ChunkBuilder(0, gzip_level)
    while True:
        block = stream.read(block_size)
        if not block:
            break
        data = pending + block if pending else block
        cut = data.rfind(rt)
        if cut < 0:
            if len(data) > MAX_ROW_BYTES:
                raise ValueError(f"no row terminator in {len(data)} bytes: wrong row_terminator?")
            pending = data
            continue
        whole, pending = data[: cut + len(rt)], data[cut + len(rt):]
        while whole:
            piece, whole = whole, b""
            if target_rows:
                room = target_rows - builder.rows
                if encoder.rows_in(piece) > room:
                    piece, whole = _split_rows(piece, rt, room)
            encoded, rows = encoder.encode(piece)
            builder.add(encoded, rows)
            if (target_rows and builder.rows >= target_rows) or (target_bytes and builder.raw_bytes >= target_bytes):
                yield builder.build()
                builder = _ChunkBuilder(builder.index + 1, gzip_level)
    if pending:
        raise ValueError(f"the export ends with {len(pending)} bytes after the last row terminator: "
                         "it is truncated")
    if builder.rows:
        yield builder.build()
