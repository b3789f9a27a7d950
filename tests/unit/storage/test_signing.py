"""Signed URLs: what they contain, and which are refused."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from mangakai_storage.signing import UrlSigner, Verdict, signing_key_bytes

NOW = 1_800_000_000.0
KEY = "jobs/0f3a/panels/001.png"


def _parts(url: str) -> tuple[str, str, str]:
    split = urlsplit(url)
    query = parse_qs(split.query)
    return split.path.removeprefix("/blobs/"), query["expires"][0], query["sig"][0]


def test_signed_url_is_valid_until_it_expires() -> None:
    signer = UrlSigner(b"k" * 32, "http://cdn.example:8090/")
    url, expires = signer.sign(KEY, 60, now=NOW)
    assert url.startswith(f"http://cdn.example:8090/blobs/{KEY}?expires={int(NOW) + 60}&sig=")
    key, expires_text, sig = _parts(url)
    assert expires == int(NOW) + 60
    assert signer.verify(key, expires_text, sig, now=NOW) is Verdict.VALID
    assert signer.verify(key, expires_text, sig.upper(), now=NOW + 59) is Verdict.VALID
    assert signer.verify(key, expires_text, sig, now=NOW + 60) is Verdict.EXPIRED
    assert signer.verify(key, expires_text, sig, now=NOW + 3600) is Verdict.EXPIRED


def test_tampering_is_refused() -> None:
    signer = UrlSigner(b"k" * 32, "http://h")
    key, expires, sig = _parts(signer.sign(KEY, 60, now=NOW)[0])
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    assert signer.verify(key, expires, flipped, now=NOW) is Verdict.BAD_SIGNATURE
    assert signer.verify(key, expires, sig[:-2], now=NOW) is Verdict.BAD_SIGNATURE
    assert signer.verify(key, expires, "", now=NOW) is Verdict.BAD_SIGNATURE
    # Another blob, or a later expiry, with the same signature.
    assert signer.verify("jobs/0f3a/panels/002.png", expires, sig, now=NOW) is Verdict.BAD_SIGNATURE
    assert signer.verify(key, str(int(expires) + 3600), sig, now=NOW) is Verdict.BAD_SIGNATURE
    assert signer.verify(key, "", sig, now=NOW) is Verdict.MALFORMED
    assert signer.verify(key, "-5", sig, now=NOW) is Verdict.MALFORMED
    assert signer.verify(key, expires, "\u00e9" * 64, now=NOW) is Verdict.MALFORMED


def test_another_key_is_refused() -> None:
    ours = UrlSigner(signing_key_bytes("our secret key, 16+ characters"), "http://h")
    theirs = UrlSigner(signing_key_bytes("their secret key, also long"), "http://h")
    key, expires, sig = _parts(theirs.sign(KEY, 60, now=NOW)[0])
    assert ours.verify(key, expires, sig, now=NOW) is Verdict.BAD_SIGNATURE
    assert theirs.verify(key, expires, sig, now=NOW) is Verdict.VALID


def test_signing_key_from_hex_or_text() -> None:
    assert signing_key_bytes("00ff" * 8) == bytes.fromhex("00ff" * 8)
    assert signing_key_bytes("not hex at all!!") == b"not hex at all!!"
    # Too short to be taken as hex: used as text.
    assert signing_key_bytes("abcd") == b"abcd"
