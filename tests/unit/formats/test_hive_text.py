"""The Hive text encoder (pure): exact round trip through the reference reader."""

from __future__ import annotations

import io
import random

import pytest

from flux_provider.formats import export_file as fmt
from flux_provider.formats.hive_text import BcpToHive, CsvToHive, HiveTextEncoding, decode
from tests.support.values import FT, RT, VALUES, bcp_bytes, csv_bytes


@pytest.mark.parametrize("columns", [1, 2, 3, 5])
def test_random_rows_round_trip_exactly(columns):
    rnd = random.Random(columns)
    rows = [[rnd.choice(VALUES) for _ in range(columns)] for _ in range(400)]
    rows += [[None] * columns, [""] * columns]  # all-NULL and all-empty rows (adjacent separators)
    encoded, count = BcpToHive(FT, RT, columns).encode(bcp_bytes(rows))
    assert count == len(rows)
    assert decode(encoded) == rows


def test_exact_bytes_for_a_small_block():
    encoded, _ = BcpToHive(FT, RT, 3).encode(bcp_bytes([[None, "", "a\\b"], ["x\ny", None, None]]))
    assert encoded == b"\\N\x01\x01a\\\\b\n" + b"x\\ny\x01\\N\x01\\N\n"


def test_strings_of_nul_characters_stay_apart_from_the_empty_string():
    """Format 2 writes a string of n NULs as n + 1 NUL bytes (one NUL byte is ''); neighbours share separators."""
    rows = [["", "\x00", "\x00\x00", "\x00"], ["\x00\x00\x00", "\x00a", "a\x00", None], ["\x00"] * 4]
    data = bcp_bytes(rows)
    assert data.startswith(b"\x00" + FT.encode() + b"\x00\x00" + FT.encode() + b"\x00\x00\x00")
    encoded, _ = BcpToHive(FT, RT, 4).encode(data)
    assert decode(encoded) == rows


def test_a_version_1_export_reads_as_it_was_written():
    """Version 1 had no NUL escape: its one NUL byte is '', and two NUL bytes are two NULs."""
    data = FT.encode().join([b"\x00", b"\x00\x00", b"x"]) + RT.encode()
    assert decode(BcpToHive(FT, RT, 3, format=fmt.FORMAT_V1).encode(data)[0]) == [["", "\x00\x00", "x"]]
    assert decode(BcpToHive(FT, RT, 3).encode(data)[0]) == [["", "\x00", "x"]]


def test_field_count_mismatch_is_detected():
    with pytest.raises(ValueError, match="fields, expected"):
        BcpToHive(FT, RT, 3).encode(bcp_bytes([["a", "b"]]))
    with pytest.raises(ValueError, match="does not end"):
        BcpToHive(FT, RT, 1).encode(b"abc")


def test_terminators_that_collide_with_escaped_bytes_are_refused():
    with pytest.raises(ValueError, match="row_terminator"):
        BcpToHive(FT, "~|\n", 2)
    with pytest.raises(ValueError, match="distinct"):
        HiveTextEncoding(field="\x01", collection="\x01")


def test_other_delimiters_are_honoured():
    enc = HiveTextEncoding(field=",", collection=";", map_key=":")
    encoded, _ = BcpToHive(FT, RT, 2, enc).encode(bcp_bytes([["a,b", "k:v;w"]]))
    assert encoded == b"a\\,b,k\\:v\\;w\n"
    assert decode(encoded, enc) == [["a,b", "k:v;w"]]
    with pytest.raises(ValueError, match="occurs in the export terminators"):
        BcpToHive(FT, RT, 2, HiveTextEncoding(field="|"))


def csv_encode(data: bytes, columns: int, **options) -> tuple[bytes, int]:
    encoded = list(CsvToHive(columns, **options).encode_stream(io.BytesIO(data), 1 << 20, 2))
    return b"".join(e for e, _ in encoded), sum(n for _, n in encoded)


def test_csv_input_path():
    data = b'id,txt\n1,"a,b"\n2,"multi\nline"\n3,\n4,""\n5,"say ""hi"""\n'
    encoded, rows = csv_encode(data, 2, header=True)
    assert rows == 5
    assert encoded == b'1\x01a,b\n2\x01multi\\nline\n3\x01\\N\n4\x01\n5\x01say "hi"\n'
    assert csv_encode(b'3,\n4,""\n', 2, empty_is_null=False)[0] == b"3\x01\n4\x01\n"


@pytest.mark.parametrize("columns", [1, 3])
def test_csv_random_rows_round_trip_exactly(columns):
    rnd = random.Random(columns)
    values = [v for v in VALUES if "\x00" not in (v or "")]  # CSV carries no NUL
    rows = [[rnd.choice(values) for _ in range(columns)] for _ in range(400)] + [[None] * columns, [""] * columns]
    encoded, count = csv_encode(csv_bytes(rows), columns)
    assert count == len(rows) and decode(encoded) == rows


def test_malformed_csv_names_the_row():
    with pytest.raises(ValueError, match=r"Row #3: Expected 3 columns, got 2"):
        csv_encode(b"1,a,b\n2,c,d\n3,short\n4,e,f\n", 3)


@pytest.mark.parametrize("columns", [1, 2, 4])
def test_fast_path_blocks_round_trip_exactly(columns):
    """Blocks without a raw field delimiter or newline take the one-byte fast path."""
    safe = [v for v in VALUES if v is None or ("\x01" not in v and "\n" not in v)]
    rnd = random.Random(100 + columns)
    rows = [[rnd.choice(safe) for _ in range(columns)] for _ in range(500)] + [[None] * columns, [""] * columns]
    block = bcp_bytes(rows)
    assert b"\x01" not in block and b"\n" not in block
    encoded, count = BcpToHive(FT, RT, columns).encode(block)
    assert count == len(rows) and decode(encoded) == rows
    with pytest.raises(ValueError, match="fields, expected"):
        BcpToHive(FT, RT, columns + 1).encode(block)
