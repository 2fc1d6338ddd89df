"""A small BER reader (ITU-T X.690), enough to open the CMS messages KMS sends.

KMS encodes ``CiphertextForRecipient`` in BER with indefinite lengths and splits the
encrypted content into a constructed OCTET STRING; OpenSSL writes the same structure in
DER. DER is a subset of BER, so one reader serves both. The reader builds a tree of
:class:`Element` values from untrusted input and bounds everything it can: nesting
depth, element count and length-field size, and every length is checked against the
bytes that are actually there before anything is sliced.
"""

from __future__ import annotations

from dataclasses import dataclass

UNIVERSAL = 0
APPLICATION = 1
CONTEXT = 2
PRIVATE = 3

INTEGER = 2
OCTET_STRING = 4
NULL = 5
OBJECT_IDENTIFIER = 6
SEQUENCE = 16
SET = 17

MAX_DEPTH = 32
MAX_ELEMENTS = 4096
_MAX_LENGTH_OCTETS = 4


class BerError(ValueError):
    """The input is not well-formed BER or not the structure expected."""


@dataclass(frozen=True)
class Element:
    """One TLV: primitive elements carry ``content``, constructed ones ``children``."""

    tag_class: int
    constructed: bool
    number: int
    content: bytes = b""
    children: tuple[Element, ...] = ()

    def is_(self, tag_class: int, number: int) -> bool:
        return self.tag_class == tag_class and self.number == number

    def expect(self, tag_class: int, number: int, *, constructed: bool | None = None, what: str) -> Element:
        if not self.is_(tag_class, number) or (constructed is not None and self.constructed != constructed):
            raise BerError(f"{what}: unexpected tag")
        return self

    def child(self, index: int, *, what: str) -> Element:
        if not self.constructed or index >= len(self.children):
            raise BerError(f"{what}: missing element")
        return self.children[index]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.count = 0

    def element(self, offset: int, end: int, depth: int) -> tuple[Element | None, int]:
        """Parse the element at ``offset``; ``None`` stands for an end-of-contents marker."""
        if depth > MAX_DEPTH:
            raise BerError("nesting too deep")
        self.count += 1
        if self.count > MAX_ELEMENTS:
            raise BerError("too many elements")
        data = self.data
        if offset >= end:
            raise BerError("truncated tag")
        first = data[offset]
        offset += 1
        tag_class = first >> 6
        constructed = bool(first & 0x20)
        number = first & 0x1F
        if number == 0x1F:
            number = 0
            for _ in range(4):
                if offset >= end:
                    raise BerError("truncated tag")
                octet = data[offset]
                offset += 1
                number = (number << 7) | (octet & 0x7F)
                if not octet & 0x80:
                    break
            else:
                raise BerError("tag number too large")
        if offset >= end:
            raise BerError("truncated length")
        length_octet = data[offset]
        offset += 1
        if first == 0 and length_octet == 0:
            return None, offset
        if length_octet == 0x80:
            # Indefinite length: children until an end-of-contents marker (constructed only).
            if not constructed:
                raise BerError("indefinite length on a primitive element")
            children: list[Element] = []
            while True:
                child, offset = self.element(offset, end, depth + 1)
                if child is None:
                    return Element(tag_class, True, number, children=tuple(children)), offset
                children.append(child)
        if length_octet & 0x80:
            count = length_octet & 0x7F
            if count > _MAX_LENGTH_OCTETS or offset + count > end:
                raise BerError("bad length")
            length = int.from_bytes(data[offset : offset + count], "big")
            offset += count
        else:
            length = length_octet
        stop = offset + length
        if stop > end:
            raise BerError("element runs past its container")
        if not constructed:
            return Element(tag_class, False, number, content=data[offset:stop]), stop
        children = []
        while offset < stop:
            child, offset = self.element(offset, stop, depth + 1)
            if child is None:
                raise BerError("end-of-contents inside a definite-length element")
            children.append(child)
        return Element(tag_class, True, number, children=tuple(children)), stop


def decode(data: bytes) -> Element:
    """Parse exactly one element covering all of ``data``."""
    element, offset = _Reader(data).element(0, len(data), 0)
    if element is None:
        raise BerError("unexpected end-of-contents")
    if offset != len(data):
        raise BerError("trailing data after the element")
    return element


def octets(element: Element, *, what: str) -> bytes:
    """The value of an OCTET STRING, primitive or constructed from segments (BER 8.7)."""
    if not element.constructed:
        return element.content
    parts: list[bytes] = []
    for child in element.children:
        child.expect(UNIVERSAL, OCTET_STRING, what=what)
        parts.append(octets(child, what=what))
    return b"".join(parts)


def integer(element: Element, *, what: str) -> int:
    element.expect(UNIVERSAL, INTEGER, constructed=False, what=what)
    if not element.content:
        raise BerError(f"{what}: empty INTEGER")
    return int.from_bytes(element.content, "big", signed=True)


def oid(element: Element, *, what: str) -> str:
    """Dotted form of an OBJECT IDENTIFIER."""
    element.expect(UNIVERSAL, OBJECT_IDENTIFIER, constructed=False, what=what)
    content = element.content
    if not content or content[-1] & 0x80:
        raise BerError(f"{what}: malformed OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for octet in content:
        if value == 0 and octet == 0x80:
            raise BerError(f"{what}: non-minimal OBJECT IDENTIFIER")
        value = (value << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(arc) for arc in head + arcs[1:])
