"""The chunker (pure): row-aligned chunks from blocks encoded on several threads, in order."""

from __future__ import annotations

import gzip
import io
import random

import pytest

from flux_provider.formats.chunker import chunks
from flux_provider.formats.hive_text import BcpToHive, decode
from tests.support.values import FT, RT, VALUES, bcp_bytes, gzip_members

COLUMNS = 3


def _rows(n: int, seed: int = 7):
    rnd = random.Random(seed)
    return [[f"r{i}"] + [rnd.choice(VALUES) for _ in range(COLUMNS - 1)] for i in range(n)]


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("target_rows,target_bytes", [(1, None), (7, None), (None, 500), (50, 700), (None, 10**9)])
def test_chunks_hold_every_row_once_in_order(workers, target_rows, target_bytes):
    rows = _rows(600)
    stream = io.BytesIO(bcp_bytes(rows))
    out = list(
        chunks(
            stream,
            BcpToHive(FT, RT, COLUMNS),
            target_rows=target_rows,
            target_bytes=target_bytes,
            block_size=997,
            workers=workers,
        )
    )  # blocks cut rows: each block ends mid-row
    assert [c.index for c in out] == list(range(len(out)))
    assert all(c.data.endswith(b"\n") for c in out)
    assert sum(c.rows for c in out) == len(rows)
    assert decode(b"".join(c.data for c in out)) == rows
    for chunk in out[:-1]:
        if target_rows and not target_bytes:
            assert chunk.rows == target_rows
        if target_bytes:
            assert chunk.raw_bytes >= target_bytes or chunk.rows == target_rows
    if target_bytes == 10**9:
        assert len(out) == 1


@pytest.mark.parametrize("workers", [1, 3])
def test_gzip_chunks_decompress_to_the_same_text(workers):
    """Each piece of a chunk is a gzip member of its own (compressed in parallel): one gzip stream."""
    rows = _rows(300)
    out = list(
        chunks(
            io.BytesIO(bcp_bytes(rows)),
            BcpToHive(FT, RT, COLUMNS),
            target_rows=100,
            gzip_level=1,
            block_size=1024,
            workers=workers,
        )
    )
    assert len(out) == 3
    assert all(gzip_members(c.data) > 1 for c in out)
    assert [len(gzip.decompress(c.data)) for c in out] == [c.raw_bytes for c in out]
    assert decode(b"".join(gzip.decompress(c.data) for c in out)) == rows


@pytest.mark.parametrize("workers", [1, 3])
def test_a_bad_row_in_a_middle_block_fails_the_stream(workers):
    good = bcp_bytes(_rows(200))
    bad = good + bcp_bytes([["only", "two"]]) + good
    with pytest.raises(ValueError, match=r"^row 201 has 2 fields, expected 3 .*'only\\x1f\|~two'"):
        list(chunks(io.BytesIO(bad), BcpToHive(FT, RT, COLUMNS), target_rows=10, block_size=512, workers=workers))
    with pytest.raises(ValueError, match="truncated"):
        list(chunks(io.BytesIO(good[:-1]), BcpToHive(FT, RT, COLUMNS), block_size=512, workers=workers))
