"""libxml2's XSD validation errors as sentences: what is wrong, on which element, and how to fix it.

libxml2 reports, for example, "Element 'owner': Element content is not allowed, because the type definition
is simple." :func:`explain` turns each kind of error that ``dataset.xsd`` can raise (sequence, required and
unknown attributes, patterns, enumerations, bounds, XSD data types, text or elements where they do not
belong) into a message and a fix. An error of a kind not listed keeps libxml2's text, tidied, with a pointer
to the spec reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

REFERENCE = "the spec reference (generated from dataset.xsd)"

#: What a value of an XSD built-in type looks like, for the messages.
TYPES = {
    "xs:positiveInteger": "a whole number of 1 or more",
    "xs:nonNegativeInteger": "a whole number of 0 or more",
    "xs:integer": "a whole number",
    "xs:decimal": "a number (like 0.5)",
    "xs:boolean": "true or false",
    "xs:date": "a date written YYYY-MM-DD",
    "xs:anyURI": "a URI",
}

#: How to fix a value that does not match one of the XSD's patterns, by what the pattern admits.
PATTERNS = {
    "[A-Za-z_][A-Za-z0-9_]{0,127}": "use letters, digits and _ only, not starting with a digit (at most 128)",
}


@dataclass(frozen=True)
class Explained:
    element: str | None  # "s3" or "s3 location=": where, as SpecError shows it
    message: str
    fix: str


def _names(listed: str) -> list[str]:
    """``( a, b, ##other{...}* )`` -> ``["a", "b"]``."""
    return [n.strip() for n in listed.split(",") if n.strip() and not n.strip().startswith("#")]


def _one_of(names: list[str]) -> str:
    tags = [f"<{n}>" for n in names]
    return tags[0] if len(tags) == 1 else ", ".join(tags[:-1]) + " or " + tags[-1]


def explain(raw: str) -> Explained:
    """The sentence for one libxml2 validation message (``error.message``)."""
    head = re.match(r"^Element '([^']+)'(?:, attribute '([^']+)')?: (.*)$", raw.strip(), re.S)
    if not head:
        return Explained(None, raw.strip().rstrip("."), f"see {REFERENCE}")
    tag, attribute, text = head.group(1), head.group(2), head.group(3).strip()
    where = tag + (f" {attribute}=" if attribute else "")
    for pattern, sentence in _RULES:
        if m := pattern.match(text):
            return sentence(m, tag, attribute, where)
    return Explained(where, re.sub(r"\.+$", "", text), f"see {REFERENCE} for <{tag}>")


def _unexpected(m, tag, attribute, where) -> Explained:
    if m.group(1) is None:
        return Explained(
            tag,
            f"<{tag}> is not allowed here (nothing more is expected in its parent)",
            f"remove <{tag}> or move it to where {REFERENCE} places it",
        )
    return Explained(
        tag,
        f"<{tag}> is not allowed here: the spec expects {_one_of(_names(m.group(1)))} at this place (missing, "
        "misspelt or in another order)",
        f"add what is missing before <{tag}>, or fix the spelling of <{tag}>, or move it: the elements come "
        f"in the order of {REFERENCE}",
    )


def _missing_child(m, tag, attribute, where) -> Explained:
    expected = _one_of(_names(m.group(1)))
    return Explained(tag, f"<{tag}> lacks {expected}", f"add {expected} inside <{tag}>")


def _unknown_attribute(m, tag, attribute, where) -> Explained:
    return Explained(
        f"{tag} {m.group(1)}=",
        f"<{tag}> has no attribute {m.group(1)}=",
        f"check its spelling (attributes are case-sensitive) or remove it; {REFERENCE} lists those of <{tag}>",
    )


def _missing_attribute(m, tag, attribute, where) -> Explained:
    return Explained(
        tag, f"<{tag}> needs the attribute {m.group(1)}=", f'add {m.group(1)}="..." to <{tag}> ({REFERENCE})'
    )


def _enumeration(m, tag, attribute, where) -> Explained:
    allowed = [v.strip().strip("'") for v in m.group(2).split(",")]
    return Explained(
        where,
        f"{m.group(1)!r} is not one of the values {_what(tag, attribute)} takes",
        f"write one of: {', '.join(allowed)}",
    )


def _pattern(m, tag, attribute, where) -> Explained:
    return Explained(
        where,
        f"{m.group(1)!r} is not a valid value for {_what(tag, attribute)}",
        PATTERNS.get(m.group(2), f"write a value that matches the pattern {m.group(2)}"),
    )


def _range(m, tag, attribute, where) -> Explained:
    side, kind, value, bound = m.groups()
    bound_text = {
        ("min", "In"): f"at least {bound}",
        ("min", "Ex"): f"more than {bound}",
        ("max", "In"): f"at most {bound}",
        ("max", "Ex"): f"less than {bound}",
    }[side, kind]
    return Explained(where, f"{value} is out of range for {_what(tag, attribute)}", f"write a value {bound_text}")


def _above(m, tag, attribute, where) -> Explained:
    return Explained(
        where, f"{m.group(1)} is out of range for {_what(tag, attribute)}", f"write a value above {m.group(2)}"
    )


def _empty(m, tag, attribute, where) -> Explained:
    return Explained(where, f"{_what(tag, attribute)} is empty", f"write the text of {_what(tag, attribute)}")


def _bad_type(m, tag, attribute, where) -> Explained:
    kind = TYPES.get(m.group(2))
    return Explained(
        where,
        f"{m.group(1)!r} is not valid for {_what(tag, attribute)}"
        + (f", which takes {kind}" if kind else f" (type {m.group(2)})"),
        f"write {kind}" if kind else f"see {REFERENCE} for the values of {_what(tag, attribute)}",
    )


def _text_only(m, tag, attribute, where) -> Explained:
    return Explained(tag, f"<{tag}> holds text only, and it contains an element", f"remove the elements inside <{tag}>")


def _elements_only(m, tag, attribute, where) -> Explained:
    return Explained(
        tag,
        f"<{tag}> holds elements only, and it contains text",
        f"remove the text inside <{tag}>, or put it in the element it belongs to",
    )


def _not_a_spec(m, tag, attribute, where) -> Explained:
    return Explained(
        tag,
        f"the document's root element is <{tag}>, not <dataset>: this is not a data-set spec",
        'a spec starts with <dataset name="...">; move other XML files out of the specs folder',
    )


#: libxml2's message (after "Element '...': ") -> the sentence; the first pattern that matches wins.
_RULES = [
    (re.compile(r"This element is not expected\.(?: Expected is (?:one of )?\( (.*) \)\.?)?"), _unexpected),
    (re.compile(r"Missing child element\(s\)\. Expected is (?:one of )?\( (.*) \)\.?$"), _missing_child),
    (re.compile(r"The attribute '([^']+)' is not allowed\.?$"), _unknown_attribute),
    (re.compile(r"The attribute '([^']+)' is required but missing\.?$"), _missing_attribute),
    (
        re.compile(r"\[facet 'enumeration'\] The value '(.*)' is not an element of the set \{(.*)\}\.?$", re.S),
        _enumeration,
    ),
    (re.compile(r"\[facet 'pattern'\] The value '(.*)' is not accepted by the pattern '(.*)'\.?$", re.S), _pattern),
    (
        re.compile(
            r"\[facet '(min|max)(In|Ex)clusive'\] The value '(.*)' is (?:less|greater) than (?:or equal to )?the "
            r"(?:minimum|maximum) value allowed \('(.*)'\)\.?$"
        ),
        _range,
    ),
    (re.compile(r"\[facet 'minExclusive'\] The value '(.*)' must be greater than '(.*)'\.?$"), _above),
    (re.compile(r"\[facet 'minLength'\] The value (?:'\s*' )?has a length of '0'"), _empty),
    (re.compile(r"'(.*)' is not a valid value of the (?:atomic|list|union) type '([^']+)'\.?$", re.S), _bad_type),
    (re.compile(r"Element content is not allowed, because the type definition is simple"), _text_only),
    (re.compile(r"Character content other than whitespace is not allowed"), _elements_only),
    (re.compile(r"No matching global declaration available for the validation root"), _not_a_spec),
]


def _what(tag: str, attribute: str | None) -> str:
    return f"<{tag} {attribute}=>" if attribute else f"<{tag}>"
