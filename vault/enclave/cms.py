"""Open KMS's ``CiphertextForRecipient``: CMS EnvelopedData (RFC 5652) for the enclave's key.

KMS answers an attested ``Decrypt`` with a ``ContentInfo`` holding ``EnvelopedData``
whose ``KeyTransRecipientInfo`` wraps an AES-256 content key with RSAES-OAEP (SHA-256,
MGF1-SHA-256, empty label) to the RSA key named in the attestation document, and whose
content is encrypted with AES-256-CBC. ``cryptography``'s PKCS#7 decryption supports
only PKCS#1 v1.5 key transport, so this module parses the structure itself
(:mod:`vault.enclave.ber`) and uses ``cryptography`` for the RSA and AES primitives.

Only exactly that algorithm pair is accepted: a message offering PKCS#1 v1.5, OAEP
with SHA-1 or another content cipher is refused rather than opened, so a tampered
response cannot steer the enclave to a weaker primitive. Every failure that happens
after the private key is used reports the same text, so a caller that feeds modified
messages learns nothing from the error about the padding or the key (no oracle).
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from vault.enclave.ber import (
    CONTEXT,
    NULL,
    OCTET_STRING,
    SEQUENCE,
    SET,
    UNIVERSAL,
    BerError,
    Element,
    decode,
    integer,
    octets,
    oid,
)

OID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
OID_DATA = "1.2.840.113549.1.7.1"
OID_RSAES_OAEP = "1.2.840.113549.1.1.7"
OID_MGF1 = "1.2.840.113549.1.1.8"
OID_P_SPECIFIED = "1.2.840.113549.1.1.9"
OID_SHA256 = "2.16.840.1.101.3.4.2.1"
OID_AES256_CBC = "2.16.840.1.101.3.4.1.42"

AES256_KEY_SIZE = 32
AES_BLOCK_SIZE = 16
#: KMS sends one recipient; a few more are tolerated, an unbounded list is not.
MAX_RECIPIENTS = 8
_OPEN_FAILED = "cannot open the enveloped data with the enclave key"


class CmsError(ValueError):
    """The message is malformed, uses other algorithms, or is not for this key."""


def _algorithm(element: Element, *, what: str) -> tuple[str, Element | None]:
    element.expect(UNIVERSAL, SEQUENCE, constructed=True, what=what)
    algorithm = oid(element.child(0, what=what), what=what)
    params = element.children[1] if len(element.children) > 1 else None
    if len(element.children) > 2:
        raise BerError(f"{what}: unexpected elements")
    return algorithm, params


def _expect_sha256(element: Element, *, what: str) -> None:
    algorithm, params = _algorithm(element, what=what)
    if algorithm != OID_SHA256:
        raise CmsError(f"{what} is not SHA-256")
    if params is not None and not params.is_(UNIVERSAL, NULL):
        raise CmsError(f"{what} has unexpected parameters")


def _explicit(element: Element, *, what: str) -> Element:
    if not element.constructed or len(element.children) != 1:
        raise BerError(f"{what}: malformed explicit tag")
    return element.children[0]


def _check_oaep_sha256(params: Element | None) -> None:
    """Require RSAES-OAEP-params with SHA-256, MGF1-SHA-256 and an empty label.

    Absent fields default to SHA-1 (RFC 8017 A.2.1), which is refused.
    """
    if params is None:
        raise CmsError("RSAES-OAEP parameters are missing (SHA-1 defaults are not accepted)")
    params.expect(UNIVERSAL, SEQUENCE, constructed=True, what="RSAES-OAEP parameters")
    fields = {child.number: child for child in params.children if child.tag_class == CONTEXT}
    if len(fields) != len(params.children):
        raise CmsError("RSAES-OAEP parameters carry unexpected elements")
    if 0 not in fields or 1 not in fields:
        raise CmsError("RSAES-OAEP must name SHA-256 and MGF1-SHA-256 explicitly")
    _expect_sha256(_explicit(fields[0], what="OAEP hash"), what="OAEP hash")
    mgf, mgf_params = _algorithm(_explicit(fields[1], what="OAEP mask"), what="OAEP mask")
    if mgf != OID_MGF1 or mgf_params is None:
        raise CmsError("OAEP mask generation is not MGF1")
    _expect_sha256(mgf_params, what="MGF1 hash")
    if 2 in fields:
        source, label = _algorithm(_explicit(fields[2], what="OAEP label"), what="OAEP label")
        if source != OID_P_SPECIFIED or label is None:
            raise CmsError("OAEP label source is not pSpecified")
        if octets(label.expect(UNIVERSAL, OCTET_STRING, what="OAEP label"), what="OAEP label"):
            raise CmsError("OAEP label is not empty")


def _wrapped_keys(recipient_infos: Element) -> list[bytes]:
    """The encrypted content keys of the OAEP-SHA-256 key-transport recipients."""
    recipient_infos.expect(UNIVERSAL, SET, constructed=True, what="RecipientInfos")
    if not recipient_infos.children or len(recipient_infos.children) > MAX_RECIPIENTS:
        raise CmsError("RecipientInfos must hold 1 to 8 recipients")
    keys: list[bytes] = []
    refusal = "no key-transport recipient"
    for info in recipient_infos.children:
        # Other RecipientInfo choices (key agreement, KEK, password) are context-tagged.
        if not info.is_(UNIVERSAL, SEQUENCE) or len(info.children) != 4:
            continue
        version = integer(info.children[0], what="KeyTransRecipientInfo version")
        if version not in (0, 2):
            raise CmsError(f"unsupported KeyTransRecipientInfo version {version}")
        algorithm, params = _algorithm(info.children[2], what="key encryption algorithm")
        if algorithm != OID_RSAES_OAEP:
            refusal = "the key transport is not RSAES-OAEP"
            continue
        _check_oaep_sha256(params)
        encrypted_key = info.children[3].expect(UNIVERSAL, OCTET_STRING, what="encrypted key")
        keys.append(octets(encrypted_key, what="encrypted key"))
    if not keys:
        raise CmsError(refusal)
    return keys


def _content(encrypted_content_info: Element) -> tuple[bytes, bytes]:
    """Return ``(iv, ciphertext)`` of an AES-256-CBC ``EncryptedContentInfo``."""
    what = "EncryptedContentInfo"
    encrypted_content_info.expect(UNIVERSAL, SEQUENCE, constructed=True, what=what)
    if oid(encrypted_content_info.child(0, what=what), what=what) != OID_DATA:
        raise CmsError("the enveloped content type is not data")
    algorithm, iv = _algorithm(encrypted_content_info.child(1, what=what), what="content encryption")
    if algorithm != OID_AES256_CBC:
        raise CmsError("the content encryption is not AES-256-CBC")
    if iv is None or not iv.is_(UNIVERSAL, OCTET_STRING):
        raise CmsError("the AES-256-CBC IV is missing")
    iv_bytes = octets(iv, what="IV")
    if len(iv_bytes) != AES_BLOCK_SIZE:
        raise CmsError("the AES-256-CBC IV must be 16 bytes")
    if len(encrypted_content_info.children) < 3:
        raise CmsError("the encrypted content is detached")
    # [0] IMPLICIT OCTET STRING: primitive (DER) or constructed from segments (BER).
    body = encrypted_content_info.children[2].expect(CONTEXT, 0, what="encrypted content")
    ciphertext = octets(body, what="encrypted content")
    if not ciphertext or len(ciphertext) % AES_BLOCK_SIZE:
        raise CmsError("the encrypted content is not a whole number of AES blocks")
    return iv_bytes, ciphertext


def _parse(message: bytes) -> tuple[list[bytes], bytes, bytes]:
    content_info = decode(message)
    what = "ContentInfo"
    content_info.expect(UNIVERSAL, SEQUENCE, constructed=True, what=what)
    if oid(content_info.child(0, what=what), what=what) != OID_ENVELOPED_DATA:
        raise CmsError("the message is not CMS EnvelopedData")
    wrapper = content_info.child(1, what=what).expect(CONTEXT, 0, constructed=True, what=what)
    enveloped = _explicit(wrapper, what="EnvelopedData")
    enveloped.expect(UNIVERSAL, SEQUENCE, constructed=True, what="EnvelopedData")
    parts = list(enveloped.children)
    if len(parts) < 3:
        raise CmsError("EnvelopedData is incomplete")
    integer(parts[0], what="EnvelopedData version")
    index = 1
    if parts[index].is_(CONTEXT, 0):  # originatorInfo, not needed for key transport
        index += 1
    if len(parts) < index + 2:
        raise CmsError("EnvelopedData is incomplete")
    return (_wrapped_keys(parts[index]), *_content(parts[index + 1]))


def _unwrap(private_key: rsa.RSAPrivateKey, wrapped_keys: list[bytes]) -> bytes:
    oaep = OAEP(mgf=MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    for wrapped in wrapped_keys:
        try:
            key = private_key.decrypt(wrapped, oaep)
        except ValueError:
            continue
        if len(key) == AES256_KEY_SIZE:
            return key
    raise CmsError(_OPEN_FAILED)


def open_enveloped_data(message: bytes, private_key: rsa.RSAPrivateKey) -> bytes:
    """Return the content of ``message`` (BER or DER), decrypted with ``private_key``.

    Raises :class:`CmsError`; its text never depends on key or plaintext bytes.
    """
    try:
        wrapped_keys, iv, ciphertext = _parse(message)
    except BerError as exc:
        raise CmsError(f"malformed CMS message: {exc}") from None
    content_key = _unwrap(private_key, wrapped_keys)
    decryptor = Cipher(algorithms.AES256(content_key), modes.CBC(iv)).decryptor()
    del content_key
    unpadder = padding.PKCS7(AES_BLOCK_SIZE * 8).unpadder()
    try:
        return unpadder.update(decryptor.update(ciphertext) + decryptor.finalize()) + unpadder.finalize()
    except ValueError:
        raise CmsError(_OPEN_FAILED) from None
