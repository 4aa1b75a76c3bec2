"""The Hive text encoder (pure): exact round trip through the reference reader."""

from __future__ import annotations

import random

import pytest

from flux_provider.formats import export_file as fmt
from flux_provider.formats.hive_text import BcpToHive, HiveTextEncoding, csv_to_hive, decode

FT, RT = fmt.DEFAULT_FIELD_TERMINATOR, fmt.DEFAULT_ROW_TERMINATOR
VALUES = [None, "", "plain", "\\", "\\N", "N", "a\x01b", "\x02\x03", "line\nfeed", "cr\rlf\r\n", "tab\t",
          "emoji 🎬 ü", "\x1f", "|~", "~", "ends with backslash\\", "\x00inside"]


def bcp_bytes(rows):
    def raw(v):
        return b"" if v is None else (fmt.EMPTY if v == "" else v.encode())
    return b"".join(FT.encode().join(raw(v) for v in row) + RT.encode() for row in rows)


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


def test_field_count_mismatch_is_detected():
    with pytest.raises(ValueError, match="field terminators"):
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


def test_csv_input_path():
    lines = ['id,txt\n', '1,"a,b"\n', '2,"multi\nline"\n', '3,\n']
    assert list(csv_to_hive(lines, header=True)) == ["1\x01a,b\n", "2\x01multi\\nline\n", "3\x01\\N\n"]


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
    with pytest.raises(ValueError, match="field terminators"):
        BcpToHive(FT, RT, columns + 1).encode(block)
