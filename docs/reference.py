"""Writes the docs' generated references: ``reference/spec.md`` from ``dataset.xsd`` (its structure, types,
defaults and each element's and attribute's ``xs:documentation``, with an example from the sample specs),
``reference/configuration.md`` from the provider's ``[flux]`` options and ``reference/cli.md`` from the
commands' argument parsers.

``python docs/reference.py`` (``make docs`` runs it) rewrites both; ``--check`` exits 1 if either differs from
what is committed (tests/unit/provider/test_docs.py runs that).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from lxml import etree

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(REPO))

from flux_provider import CONFIG_OPTIONS  # noqa: E402
from flux_provider.specs.parser import XSD  # noqa: E402
from flux_provider.specs.schema_errors import TYPES  # noqa: E402

XS = "http://www.w3.org/2001/XMLSchema"
EXAMPLES = [REPO / "dags" / "specs", REPO / "tests" / "dags" / "specs"]  # the first use of each element


def q(tag: str) -> str:
    return f"{{{XS}}}{tag}"


def documentation(node) -> str:
    """The node's ``xs:documentation``, with markup-like words (``<alert/>``, ``flux_<name>``) as code."""
    text = " ".join((node.findtext(f"{q('annotation')}/{q('documentation')}") or "").split())
    return re.sub(r"([^\s(]*<[^<>]+>[^\s,.;:)]*)", r"`\1`", text)


class Schema:
    def __init__(self, path: Path):
        self.root = etree.parse(str(path)).getroot()
        self.simple = {t.get("name"): t for t in self.root.findall(q("simpleType"))}

    def describe_type(self, node) -> str:
        """What a value of an attribute or a text element is, in words."""
        named = node.get("type")
        inline = node.find(q("simpleType"))
        if named and named.startswith("xs:"):
            return TYPES.get(named, "text")
        if named in self.simple:
            return self.simple_words(self.simple[named])
        if inline is not None:
            return self.simple_words(inline)
        content = node.find(f"{q('complexType')}/{q('simpleContent')}/{q('extension')}")
        if content is not None:
            return TYPES.get(content.get("base"), "text")
        return "text"

    def simple_words(self, simple) -> str:
        listed = simple.find(q("list"))
        if listed is not None:
            items = self.simple_words(self.simple[listed.get("itemType")])
            return f"a space-separated list, each {items}"
        restriction = simple.find(q("restriction"))
        values = [e.get("value") for e in restriction.findall(q("enumeration"))]
        if values:
            return "one of " + ", ".join(f"`{v}`" for v in values)
        pattern = restriction.find(q("pattern"))
        if pattern is not None:
            return f"text matching `{pattern.get('value')}`"
        low = restriction.find(q("minExclusive"))
        if low is not None:
            return f"a number above {low.get('value')}"
        if restriction.find(q("minLength")) is not None:
            return "text, not empty"
        return TYPES.get(restriction.get("base"), "text")

    def children(self, element) -> list:
        complex_type = element.find(q("complexType"))
        if complex_type is None:
            return []
        return [e for e in complex_type.iter(q("element")) if self.parent_element(e) is element]

    @staticmethod
    def parent_element(node):
        parent = node.getparent()
        while parent is not None and parent.tag != q("element"):
            parent = parent.getparent()
        return parent

    def attributes(self, element) -> list:
        complex_type = element.find(q("complexType"))
        if complex_type is None:
            return []
        return [a for a in complex_type.iter(q("attribute")) if self.parent_element(a) is element]


def occurs(element) -> str:
    low, high = element.get("minOccurs", "1"), element.get("maxOccurs", "1")
    parent = element.getparent()
    if parent.tag == q("choice"):
        return "one of a choice" + (", repeated" if parent.get("maxOccurs") == "unbounded" else "")
    if high == "unbounded":
        return "optional, repeated" if low == "0" else "required, repeated"
    return "optional" if low == "0" else "required"


def example(tag: str, attribute_path: list[str]) -> str | None:
    """The first use of the element in the sample specs, as written there (its children cut to 5 lines)."""
    for folder in EXAMPLES:
        for path in sorted(folder.glob("*.xml")):
            root = etree.parse(str(path), etree.XMLParser(remove_comments=True)).getroot()
            found = root if attribute_path == ["dataset"] else root.find("/".join(attribute_path[1:]))
            if found is not None:
                text = etree.tostring(found, encoding="unicode", with_tail=False).strip()
                lines = text.splitlines()
                if len(lines) > 6:
                    lines = [*lines[:5], "  ...", lines[-1].strip()]
                return f"{path.relative_to(REPO)}:\n\n```xml\n" + "\n".join(lines) + "\n```"
    return None


def spec_reference() -> str:
    schema = Schema(XSD)
    out = [
        "# Spec reference",
        "",
        "Generated from `flux_provider/specs/dataset.xsd` by `docs/reference.py`: every element and attribute",
        "of a data-set spec, in the order a spec writes them, with its type, default and meaning. The XSD",
        "carries the same text (`xs:documentation`), so an editor with XML Schema support shows it too.",
        "Check a spec with `flux-specs check` ({doc}`/checking`).",
        "",
    ]

    def walk(element, path: list[str]) -> None:
        name = element.get("name")
        path = [*path, name]
        out.append(f"## `{' / '.join(path)}`")
        out.append("")
        out.append(documentation(element))
        out.append("")
        kids = schema.children(element)
        facts = [f"**Occurs:** {occurs(element)}" if len(path) > 1 else "**Root element**"]
        if (
            not kids
            and element.find(q("complexType")) is None
            or element.find(f"{q('complexType')}/{q('simpleContent')}") is not None
        ):
            facts.append(f"**Text:** {schema.describe_type(element)}")
        if kids:
            facts.append("**Contains:** " + ", ".join(f"`<{k.get('name')}>`" for k in kids))
        out.append("; ".join(facts) + ".")
        out.append("")
        attributes = schema.attributes(element)
        if attributes:
            out.extend(["| attribute | value | default | meaning |", "| --- | --- | --- | --- |"])
            for a in attributes:
                default = (
                    "required" if a.get("use") == "required" else (f"`{a.get('default')}`" if a.get("default") else "")
                )
                out.append(f"| `{a.get('name')}` | {schema.describe_type(a)} | {default} | {documentation(a)} |")
            out.append("")
        shown = example(name, path)
        if shown:
            out.extend(["Example, from " + shown, ""])
        for kid in kids:
            walk(kid, path)

    walk(schema.root.find(q("element")), [])
    return "\n".join(out).rstrip() + "\n"


def config_reference() -> str:
    out = [
        "# Configuration reference",
        "",
        "Generated from the provider's `[flux]` options (`flux_provider.CONFIG_OPTIONS`, which",
        "`airflow config list` also shows) by `docs/reference.py`. Set them in `airflow.cfg` or as",
        "`AIRFLOW__FLUX__<OPTION>` environment variables, on the scheduler and the workers alike.",
        "",
    ]
    for name, (description, kind, default) in CONFIG_OPTIONS.items():
        out += [
            f"## `[flux] {name}`",
            "",
            description,
            "",
            f"**Type:** {kind}; **default:** `{default}`; **environment:** `AIRFLOW__FLUX__{name.upper()}`.",
            "",
        ]
    return "\n".join(out).rstrip() + "\n"


def _arguments(parser: argparse.ArgumentParser) -> list[str]:
    """A table of a parser's arguments: name (and choices), default, meaning."""
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        name = ", ".join(action.option_strings) or (action.metavar or action.dest)
        if action.option_strings and action.nargs != 0:
            name += f" {action.metavar or action.dest.upper()}"
        choices = f" ({' or '.join(map(str, action.choices))})" if action.choices else ""
        default = "" if action.default in (None, False, [], argparse.SUPPRESS) else f"`{action.default}`"
        rows.append(f"| `{name}`{choices} | {default} | {action.help or ''} |")
    return ["| argument | default | meaning |", "| --- | --- | --- |", *rows, ""] if rows else []


def _command_section(parser: argparse.ArgumentParser, module) -> list[str]:
    prog = parser.prog
    described = re.sub(r":\w+:`~?([^`]+)`", r"``\1``", (module.__doc__ or "").strip())  # reST roles as code
    out = [f"## `{prog}`", "", *"\n\n".join(described.split("\n\n")[1:]).splitlines(), ""]  # after its title
    out += ["```text", parser.format_usage().strip(), "```", ""]
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    helps = {c.dest: c.help for c in sub._choices_actions} if sub else {}
    for name, command in sub.choices.items() if sub else []:
        usage = command.format_usage().strip().removeprefix("usage: ")
        said = helps.get(name) or ""
        out += [f"### `{prog} {name}`", "", said[:1].upper() + said[1:] + ".", ""]
        out += ["```text", usage, "```", "", *_arguments(command)]
    return out


def cli_reference() -> str:
    from flux_provider.specs import __main__ as specs_cli
    from flux_provider.throttle import __main__ as throttle_cli

    out = [
        "# Command line reference",
        "",
        "Generated from the commands' argument parsers by `docs/reference.py`; `--help` on any command prints",
        "the same. Both run where `airflow` runs (the throttle commands and `flux-specs pools` need Airflow's",
        "metadata database, as `airflow pools` does).",
        "",
    ]
    for module in (specs_cli, throttle_cli):
        out += _command_section(module.parser(), module)
    return "\n".join(out).rstrip() + "\n"


PAGES = {
    "reference/spec.md": spec_reference,
    "reference/configuration.md": config_reference,
    "reference/cli.md": cli_reference,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed page differs")
    args = parser.parse_args()
    stale = []
    for page, make in PAGES.items():
        path, text = DOCS / page, make()
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(page)
        else:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
    for page in stale:
        print(f"docs/{page} is not what the code says (the XSD, options, parsers): run `python docs/reference.py`")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
