"""Reading a spec file safely and validating it against ``dataset.xsd``.

Safety: the parser refuses any DTD (so no entity can be declared, let alone
expanded: no XXE, no billion laughs), never touches the network and keeps
libxml2's size limits; a file that is too big or not UTF-8 is refused with the
byte and line. Schema violations are rewritten as sentences by
:mod:`flux_provider.specs.schema_errors`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from flux_provider.specs import schema_errors
from flux_provider.specs.spec_error import SpecError

XSD = Path(__file__).with_name("dataset.xsd")
MAX_BYTES = 1_000_000


def preload() -> None:
    """Compile the spec schema now, in a process that forks the ones that parse specs (see the plugin)."""
    _schema()


@lru_cache(maxsize=1)
def _schema():
    from lxml import etree

    return etree.XMLSchema(etree.parse(str(XSD), _parser()))


def _parser():
    from lxml import etree

    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
    )


def parse_xml(path: Path):
    """The element tree of ``path``, refusing DTDs and entities before libxml2 sees them."""
    from lxml import etree

    data = path.read_bytes()
    if len(data) > MAX_BYTES:
        raise SpecError(
            path,
            f"the file has {len(data)} bytes, more than a spec may ({MAX_BYTES}); it passes the limit on this line",
            line=data[:MAX_BYTES].count(b"\n") + 1,
            fix="a spec describes one data set; move long SQL into a transform file",
        )
    declared = re.match(rb"""\s*<\?xml[^>]*encoding=["']([A-Za-z0-9._-]+)""", data)
    try:
        if declared is None or declared.group(1).lower() in (b"utf-8", b"utf8"):
            data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(
            path,
            f"the file is not UTF-8: byte {exc.start} (0x{data[exc.start]:02x}, line {line}) cannot be decoded",
            line=line,
            fix="save the file as UTF-8 (most editors: 'Save with encoding'; iconv -f latin1 -t utf-8)",
        ) from None
    head = data[:4096].decode("utf-8", "replace")
    if "<!DOCTYPE" in data.decode("utf-8", "replace") or "<!ENTITY" in head:
        line = data[: data.find(b"<!")].count(b"\n") + 1 if b"<!" in data else None
        raise SpecError(
            path,
            "DOCTYPE/ENTITY declarations are not allowed in a spec (they enable XXE and entity-expansion attacks)",
            line=line,
            fix="remove the <!DOCTYPE ...> block",
        )
    try:
        return etree.fromstring(data, _parser()).getroottree()
    except etree.XMLSyntaxError as exc:
        raise SpecError(
            path, f"not well-formed XML: {exc.msg}", line=exc.lineno, fix="check the tags and quoting around that line"
        ) from None


def element_line(path: Path | str, tag: str, text: str | None = None, *, name: str | None = None) -> int | None:
    """The line of the first ``<tag>`` of the spec at ``path`` (whose text is ``text`` and whose ``name=`` is
    ``name``, if given), or None."""
    return line_finder(path)(tag, text, name=name)


def line_finder(path: Path | str):
    """:func:`element_line` for many look-ups in one spec: the file is read and parsed once."""
    try:
        root = parse_xml(Path(path)).getroot()
    except (OSError, SpecError):
        root = None

    def find(tag: str, text: str | None = None, *, name: str | None = None) -> int | None:
        for element in root.iter(tag) if root is not None else ():
            if (text is None or (element.text or "").strip() == text) and (name is None or element.get("name") == name):
                return element.sourceline
        return None

    return find


def validate_schema(path: Path, tree) -> None:
    schema = _schema()
    if schema.validate(tree):
        return
    error = schema.error_log[0]
    explained = schema_errors.explain(error.message)
    raise SpecError(path, explained.message, line=error.line, element=explained.element, fix=explained.fix)
