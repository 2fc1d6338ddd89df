"""``CiphertextForRecipient`` as KMS builds it: CMS EnvelopedData to an attested RSA key.

KMS's answer (as parsed by ``aws-nitro-enclaves-sdk-c``'s ``cms.c``) is BER with
indefinite lengths: ``ContentInfo`` → ``EnvelopedData`` version 2 → one
``KeyTransRecipientInfo`` version 2 naming the key by ``subjectKeyIdentifier``, the
content key wrapped with RSAES-OAEP (SHA-256, MGF1-SHA-256) → ``EncryptedContentInfo``
with AES-256-CBC and the ciphertext as a constructed ``[0]`` of OCTET STRING segments.
:func:`envelope` writes exactly that shape, so the enclave's opener is exercised on
the encoding the real service uses; ``ber=False`` writes the same content in DER.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from vault.enclave.ber import decode
from vault.enclave.cms import (
    OID_AES256_CBC,
    OID_DATA,
    OID_ENVELOPED_DATA,
    OID_MGF1,
    OID_RSAES_OAEP,
    OID_SHA256,
)

SEGMENT = 1024
_SEQUENCE = 0x30
_SET = 0x31
_INTEGER = 0x02
_OCTET_STRING = 0x04
_OID = 0x06
_CONTEXT_0 = 0xA0
_CONTEXT_1 = 0xA1
_CONTEXT_0_PRIMITIVE = 0x80
_END_OF_CONTENTS = b"\x00\x00"


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    encoded = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def tlv(tag: int, content: bytes) -> bytes:
    """A definite-length element with a one-octet tag."""
    return bytes([tag]) + _length(len(content)) + content


def _constructed(tag: int, children: list[bytes], *, ber: bool) -> bytes:
    if ber:
        return bytes([tag, 0x80]) + b"".join(children) + _END_OF_CONTENTS
    return tlv(tag, b"".join(children))


def encode_oid(dotted: str) -> bytes:
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return tlv(_OID, bytes(body))


def _integer(value: int) -> bytes:
    return tlv(_INTEGER, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big"))


def _algorithm(oid: str, params: bytes = b"") -> bytes:
    return tlv(_SEQUENCE, encode_oid(oid) + params)


def subject_key_identifier(public_key: rsa.RSAPublicKey) -> bytes:
    """RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING value."""
    spki = decode(public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
    bit_string = spki.children[1].content
    return hashlib.sha1(bit_string[1:], usedforsecurity=False).digest()


OAEP_SHA256_PARAMS = tlv(
    _SEQUENCE,
    tlv(_CONTEXT_0, _algorithm(OID_SHA256)) + tlv(_CONTEXT_1, _algorithm(OID_MGF1, _algorithm(OID_SHA256))),
)


def envelope(content: bytes, recipient: rsa.RSAPublicKey, *, ber: bool = True) -> bytes:
    """Encrypt ``content`` for ``recipient`` as KMS does for ``CiphertextForRecipient``."""
    content_key = os.urandom(32)
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(content) + padder.finalize()
    encryptor = Cipher(algorithms.AES256(content_key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    wrapped = recipient.encrypt(
        content_key, OAEP(mgf=MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    )
    del content_key
    recipient_info = tlv(
        _SEQUENCE,
        _integer(2)
        + tlv(_CONTEXT_0_PRIMITIVE, subject_key_identifier(recipient))
        + _algorithm(OID_RSAES_OAEP, OAEP_SHA256_PARAMS)
        + tlv(_OCTET_STRING, wrapped),
    )
    if ber:
        segments = [
            tlv(_OCTET_STRING, ciphertext[i : i + SEGMENT]) for i in range(0, len(ciphertext), SEGMENT)
        ]
        encrypted = _constructed(_CONTEXT_0, segments, ber=True)
    else:
        encrypted = tlv(_CONTEXT_0_PRIMITIVE, ciphertext)
    encrypted_content_info = _constructed(
        _SEQUENCE,
        [encode_oid(OID_DATA), _algorithm(OID_AES256_CBC, tlv(_OCTET_STRING, iv)), encrypted],
        ber=ber,
    )
    enveloped_data = _constructed(
        _SEQUENCE, [_integer(2), tlv(_SET, recipient_info), encrypted_content_info], ber=ber
    )
    return _constructed(
        _SEQUENCE,
        [encode_oid(OID_ENVELOPED_DATA), _constructed(_CONTEXT_0, [enveloped_data], ber=ber)],
        ber=ber,
    )
