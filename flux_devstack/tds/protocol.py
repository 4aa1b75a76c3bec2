"""TDS 7.x wire format: packets, the tokens a server sends, and value encoders per SQL type.

Only what a test server needs: PRELOGIN (no encryption), LOGIN7 parsing,
LOGINACK/ENVCHANGE/INFO/ERROR/DONE, COLMETADATA and ROW for int types, bit,
decimal/numeric, float, nvarchar, varbinary, date, time, datetime2 and datetime.
References: [MS-TDS] sections 2.2.3 (packet header), 2.2.6 (messages), 2.2.7 (tokens).
"""

from __future__ import annotations

import datetime as dt
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal

# Packet types
SQL_BATCH, RPC, TABULAR_RESULT, ATTENTION, LOGIN7, PRELOGIN = 0x01, 0x03, 0x04, 0x06, 0x10, 0x12
STATUS_EOM = 0x01
HEADER = struct.Struct(">BBHHBB")

# Token types
COLMETADATA, ROW, ERROR, INFO, LOGINACK, ENVCHANGE, DONE = 0x81, 0xD1, 0xAA, 0xAB, 0xAD, 0xE3, 0xFD
DONE_FINAL, DONE_MORE, DONE_ERROR, DONE_COUNT, DONE_ATTN = 0x00, 0x01, 0x02, 0x10, 0x20
CURCMD_SELECT = 0xC1

# Latin1_General_CI_AS
COLLATION = bytes([0x09, 0x04, 0xD0, 0x00, 0x34])
_DATE_ZERO = dt.date(1, 1, 1)
_DATETIME_ZERO = dt.date(1900, 1, 1)


def packets(kind: int, payload: bytes, size: int, *, last: bool = True) -> bytes:
    """Frame ``payload`` into TDS packets of at most ``size`` bytes (the final one flagged EOM if ``last``)."""
    body = size - HEADER.size
    out = bytearray()
    chunks = [payload[i : i + body] for i in range(0, len(payload), body)] or [b""]
    for n, chunk in enumerate(chunks):
        status = STATUS_EOM if last and n == len(chunks) - 1 else 0
        out += HEADER.pack(kind, status, len(chunk) + HEADER.size, 0, (n + 1) % 256, 0) + chunk
    return bytes(out)


def b_varchar(text: str) -> bytes:
    data = text.encode("utf-16-le")
    return bytes([len(data) // 2]) + data


def us_varchar(text: str) -> bytes:
    data = text.encode("utf-16-le")
    return struct.pack("<H", len(data) // 2) + data


# ------------------------------------------------------------------ pre-login / login
def prelogin_response() -> bytes:
    options = [
        (0x00, bytes([15, 0, 0x07, 0xD0, 0, 0])),  # VERSION 15.0.2000
        (0x01, b"\x02"),  # ENCRYPTION: ENCRYPT_NOT_SUP
        (0x02, b"\x00"),  # INSTOPT
        (0x03, b""),  # THREADID
        (0x04, b"\x00"),  # MARS off
    ]
    offset = len(options) * 5 + 1
    table, data = bytearray(), bytearray()
    for token, value in options:
        table += struct.pack(">BHH", token, offset + len(data), len(value))
        data += value
    return bytes(table) + b"\xff" + bytes(data)


@dataclass
class Login:
    tds_version: int
    packet_size: int
    user: str
    password: str
    app: str
    database: str


def _decode_password(raw: bytes) -> str:
    return bytes((((b ^ 0xA5) << 4) & 0xF0) | ((b ^ 0xA5) >> 4) for b in raw).decode("utf-16-le")


def parse_login7(payload: bytes) -> Login:
    (tds_version,) = struct.unpack_from("<I", payload, 4)
    (packet_size,) = struct.unpack_from("<I", payload, 8)

    def field(index: int) -> bytes:
        offset, chars = struct.unpack_from("<HH", payload, 36 + 4 * index)
        return payload[offset : offset + 2 * chars]

    return Login(
        tds_version=tds_version,
        packet_size=packet_size,
        user=field(1).decode("utf-16-le"),
        password=_decode_password(field(2)),
        app=field(3).decode("utf-16-le"),
        database=field(8).decode("utf-16-le"),
    )


def loginack(tds_version: int) -> bytes:
    body = b"\x01" + struct.pack(">I", tds_version) + b_varchar("flux TDS test server") + bytes([15, 0, 7, 208])
    return bytes([LOGINACK]) + struct.pack("<H", len(body)) + body


def envchange(kind: int, new: str, old: str = "") -> bytes:
    body = bytes([kind]) + b_varchar(new) + b_varchar(old)
    return bytes([ENVCHANGE]) + struct.pack("<H", len(body)) + body


def envchange_collation() -> bytes:
    body = bytes([7, len(COLLATION)]) + COLLATION + b"\x00"
    return bytes([ENVCHANGE]) + struct.pack("<H", len(body)) + body


def message(
    number: int, text: str, *, state: int = 1, severity: int = 16, server: str = "flux-tds", info: bool = False
) -> bytes:
    body = (
        struct.pack("<iBB", number, state, severity)
        + us_varchar(text)
        + b_varchar(server)
        + b_varchar("")
        + struct.pack("<i", 1)
    )
    return bytes([INFO if info else ERROR]) + struct.pack("<H", len(body)) + body


def done(status: int = DONE_FINAL, rows: int | None = None, curcmd: int = 0) -> bytes:
    if rows is not None:
        status |= DONE_COUNT
    return bytes([DONE]) + struct.pack("<HHQ", status, curcmd, rows or 0)


# ------------------------------------------------------------------ types
@dataclass(frozen=True)
class SqlType:
    """A column's SQL Server type as the server reports it (sp_describe_first_result_set style)."""

    name: str  # int, bigint, bit, decimal, float, nvarchar, varbinary, date, time, datetime2, ...
    max_length: int = 0  # bytes, as SQL Server reports it (-1 for MAX)
    precision: int = 0
    scale: int = 0

    @property
    def system_type_name(self) -> str:
        if self.name in ("decimal", "numeric"):
            return f"{self.name}({self.precision},{self.scale})"
        if self.name in ("nvarchar", "nchar"):
            return f"{self.name}({'max' if self.max_length < 0 else self.max_length // 2})"
        if self.name in ("varchar", "char", "varbinary", "binary"):
            return f"{self.name}({'max' if self.max_length < 0 else self.max_length})"
        if self.name in ("datetime2", "time"):
            return f"{self.name}({self.scale})"
        return self.name


_FIXED = {
    "tinyint": SqlType("tinyint", 1, 3),
    "smallint": SqlType("smallint", 2, 5),
    "int": SqlType("int", 4, 10),
    "integer": SqlType("int", 4, 10),
    "bigint": SqlType("bigint", 8, 19),
    "bit": SqlType("bit", 1, 1),
    "float": SqlType("float", 8, 53),
    "real": SqlType("real", 4, 24),
    "date": SqlType("date", 3, 10),
    "datetime": SqlType("datetime", 8, 23, 3),
    "smalldatetime": SqlType("datetime", 8, 23, 3),
    "money": SqlType("decimal", 9, 19, 4),
    "smallmoney": SqlType("decimal", 5, 10, 4),
    "uniqueidentifier": SqlType("nvarchar", 72),
}
_TYPE_RE = re.compile(r"^\s*(?:TEXT\s+)?([A-Za-z_0-9]+)\s*(?:\(\s*(MAX|\d+)\s*(?:,\s*(\d+)\s*)?\))?", re.I)


def parse_declared_type(declared: str) -> SqlType | None:
    """Map a declared column type (``DECIMAL(38,10)``, ``NVARCHAR(200)``, ``DATETIME2(7)``) to SqlType."""
    match = _TYPE_RE.match(declared or "")
    if not match:
        return None
    name, arg1, arg2 = match.group(1).lower(), match.group(2), match.group(3)
    if name in _FIXED:
        return _FIXED[name]
    if name in ("decimal", "numeric"):
        precision = int(arg1) if arg1 else 18
        return SqlType(name, 17, precision, int(arg2) if arg2 else 0)
    if name in ("datetime2", "time"):
        scale = int(arg1) if arg1 else 7
        return SqlType(name, (8 if name == "datetime2" else 5), 27 if name == "datetime2" else 16, scale)
    if name in ("nvarchar", "nchar", "ntext"):
        chars = 4000 if arg1 is None or arg1.upper() == "MAX" or int(arg1) > 4000 else int(arg1)
        return SqlType("nvarchar", 2 * chars)
    if name in ("varchar", "char", "text", "sysname"):
        # Served as nvarchar: the test server speaks UTF-16 only.
        chars = 4000 if arg1 is None or arg1.upper() == "MAX" or int(arg1) > 4000 else int(arg1)
        return SqlType("nvarchar", 2 * chars)
    if name in ("varbinary", "binary", "image", "blob"):
        size = 8000 if arg1 is None or arg1.upper() == "MAX" or int(arg1) > 8000 else int(arg1)
        return SqlType("varbinary", size)
    return None


def infer_type(value) -> SqlType:
    """Type of a computed column (no declared type), from its first non-NULL value."""
    if isinstance(value, bool):
        return _FIXED["bit"]
    if isinstance(value, int):
        return _FIXED["bigint"]
    if isinstance(value, float):
        return _FIXED["float"]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return SqlType("varbinary", 8000)
    return SqlType("nvarchar", 8000)


def _decimal_bytes(precision: int) -> int:
    return 4 if precision <= 9 else 8 if precision <= 19 else 12 if precision <= 28 else 16


def _time_bytes(scale: int) -> int:
    return 3 if scale <= 2 else 4 if scale <= 4 else 5


def type_info(sql: SqlType) -> bytes:
    """The TYPE_INFO part of COLMETADATA for ``sql``."""
    if sql.name in ("tinyint", "smallint", "int", "bigint"):
        return bytes([0x26, sql.max_length])
    if sql.name == "bit":
        return bytes([0x68, 1])
    if sql.name in ("float", "real"):
        return bytes([0x6D, 8])
    if sql.name in ("decimal", "numeric"):
        return bytes([0x6A, 1 + _decimal_bytes(sql.precision), sql.precision, sql.scale])
    if sql.name == "nvarchar":
        return bytes([0xE7]) + struct.pack("<H", sql.max_length) + COLLATION
    if sql.name == "varbinary":
        return bytes([0xA5]) + struct.pack("<H", sql.max_length)
    if sql.name == "date":
        return bytes([0x28])
    if sql.name == "time":
        return bytes([0x29, sql.scale])
    if sql.name == "datetime2":
        return bytes([0x2A, sql.scale])
    if sql.name == "datetime":
        return bytes([0x6F, 8])
    raise ValueError(f"unsupported type {sql}")


def colmetadata(columns: list[tuple[str, SqlType, bool]]) -> bytes:
    out = bytearray([COLMETADATA]) + struct.pack("<H", len(columns))
    for name, sql, nullable in columns:
        out += struct.pack("<IH", 0, 0x0001 if nullable else 0) + type_info(sql) + b_varchar(name)
    return bytes(out)


_PLAIN_DECIMAL = re.compile(r"^(-?\d+)(?:\.(\d*))?$")
_DT_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?$")
_TIME_RE = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?$")


def _parse_datetime(value) -> tuple[dt.date, int]:
    """(date, 100-ns ticks since midnight) from an ISO text or a datetime/date."""
    if isinstance(value, str) and 10 <= len(value) <= 26 and value[4:5] == "-":
        # Fast path (the C parser) for texts with at most microseconds; 7 fractional digits take the regex.
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            pass
    if isinstance(value, dt.datetime):
        ticks = ((value.hour * 60 + value.minute) * 60 + value.second) * 10_000_000 + value.microsecond * 10
        return value.date(), ticks
    if isinstance(value, dt.date):
        return value, 0
    match = _DT_RE.match(str(value).strip())
    if not match:
        raise ValueError(f"not a date/time value: {value!r}")
    y, mo, d, h, mi, s, frac = match.groups()
    ticks = ((int(h or 0) * 60 + int(mi or 0)) * 60 + int(s or 0)) * 10_000_000
    if frac:
        ticks += int((frac + "0000000")[:7])
    return dt.date(int(y), int(mo), int(d)), ticks


def _parse_time(value) -> int:
    if isinstance(value, dt.time):
        return ((value.hour * 60 + value.minute) * 60 + value.second) * 10_000_000 + value.microsecond * 10
    match = _TIME_RE.match(str(value).strip())
    if not match:
        return _parse_datetime(value)[1]
    h, mi, s, frac = match.groups()
    return ((int(h) * 60 + int(mi)) * 60 + int(s or 0)) * 10_000_000 + (int((frac + "0000000")[:7]) if frac else 0)


def _scaled_time(ticks: int, scale: int) -> bytes:
    units = ticks // 10 ** (7 - scale)
    return units.to_bytes(_time_bytes(scale), "little")


def encoder(sql: SqlType) -> Callable[[object], bytes]:
    """A function turning one Python/SQLite value into its TDS ROW bytes for ``sql``."""
    name = sql.name
    if name in ("tinyint", "smallint", "int", "bigint"):
        size = sql.max_length
        fmt = {1: "<B", 2: "<h", 4: "<i", 8: "<q"}[size]
        prefix = bytes([size])
        return lambda v: b"\x00" if v is None else prefix + struct.pack(fmt, int(v))
    if name == "bit":
        return lambda v: b"\x00" if v is None else b"\x01" + (b"\x01" if int(v) else b"\x00")
    if name in ("float", "real"):
        return lambda v: b"\x00" if v is None else b"\x08" + struct.pack("<d", float(v))
    if name in ("decimal", "numeric"):
        return _decimal_encoder(sql)
    if name == "nvarchar":

        def enc_nvarchar(v) -> bytes:
            if v is None:
                return b"\xff\xff"
            data = (v if isinstance(v, str) else str(v)).encode("utf-16-le", "surrogatepass")
            if len(data) > sql.max_length:
                raise OverflowError(f"string of {len(data) // 2} characters exceeds nvarchar({sql.max_length // 2})")
            return struct.pack("<H", len(data)) + data

        return enc_nvarchar
    if name == "varbinary":

        def enc_varbinary(v) -> bytes:
            if v is None:
                return b"\xff\xff"
            data = bytes(v) if not isinstance(v, str) else bytes.fromhex(v.removeprefix("0x"))
            return struct.pack("<H", len(data)) + data

        return enc_varbinary
    if name in ("date", "time", "datetime2", "datetime"):
        return _temporal_encoder(sql)
    raise ValueError(f"unsupported type {sql}")


def _decimal_encoder(sql: SqlType) -> Callable[[object], bytes]:
    width, exponent = _decimal_bytes(sql.precision), Decimal(1).scaleb(-sql.scale)
    context = Context(prec=80, rounding=ROUND_HALF_UP)  # as SQL Server rounds: half away from zero

    def enc_decimal(v) -> bytes:
        if v is None:
            return b"\x00"
        match = _PLAIN_DECIMAL.match(v) if isinstance(v, str) else None
        if match and len(match.group(2) or "") <= sql.scale:  # exact text: scale it without Decimal
            whole, fraction = match.group(1), match.group(2) or ""
            unscaled = int(whole + fraction + "0" * (sql.scale - len(fraction)))
        else:
            number = context.create_decimal(repr(v) if isinstance(v, float) else str(v))
            unscaled = int(number.quantize(exponent, context=context).scaleb(sql.scale, context=context))
        if abs(unscaled) >= 10**sql.precision:
            raise OverflowError(f"{v} does not fit decimal({sql.precision},{sql.scale})")
        return bytes([1 + width, 1 if unscaled >= 0 else 0]) + abs(unscaled).to_bytes(width, "little")

    return enc_decimal


def _temporal_encoder(sql: SqlType) -> Callable[[object], bytes]:
    name = sql.name
    if name == "date":

        def enc_date(v) -> bytes:
            if v is None:
                return b"\x00"
            day, _ = _parse_datetime(v)
            return b"\x03" + (day - _DATE_ZERO).days.to_bytes(3, "little")

        return enc_date
    if name == "time":
        size = _time_bytes(sql.scale)
        return lambda v: b"\x00" if v is None else bytes([size]) + _scaled_time(_parse_time(v), sql.scale)
    if name == "datetime2":
        size = _time_bytes(sql.scale) + 3

        def enc_datetime2(v) -> bytes:
            if v is None:
                return b"\x00"
            day, ticks = _parse_datetime(v)
            return bytes([size]) + _scaled_time(ticks, sql.scale) + (day.toordinal() - 1).to_bytes(3, "little")

        return enc_datetime2
    if name == "datetime":

        def enc_datetime(v) -> bytes:
            if v is None:
                return b"\x00"
            day, ticks = _parse_datetime(v)
            three_hundredths = round(ticks * 300 / 10_000_000)
            return b"\x08" + struct.pack("<iI", (day - _DATETIME_ZERO).days, three_hundredths)

        return enc_datetime
    raise ValueError(f"unsupported type {sql}")
