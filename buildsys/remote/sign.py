"""Signed manifests: an entry a pull request could have written is not trusted on main.

The signature is an HMAC-SHA256, under the key in BUILDSYS_CACHE_KEY, over the
canonical JSON of everything in the manifest but the signature itself, so the
stage key, the output hashes and sizes are all covered: a manifest copied under
another key fails as surely as an edited one.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from buildsys.hashing import canonical_json

SIG = "sig"


def signature(secret: bytes, doc: dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != SIG}
    return hmac.new(secret, canonical_json(body).encode("utf-8"), hashlib.sha256).hexdigest()


def signed(secret: bytes | None, doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, SIG: signature(secret, doc)} if secret else dict(doc)


def signature_problem(secret: bytes | None, doc: dict[str, Any]) -> str | None:
    """Why a manifest must not be trusted under this key, or None. Without a key every
    entry is trusted as it is (the README says so)."""
    if secret is None:
        return None
    sig = doc.get(SIG)
    if not isinstance(sig, str):
        return "it is not signed (BUILDSYS_CACHE_KEY is set, so entries must be)"
    if not hmac.compare_digest(sig, signature(secret, doc)):
        return "its signature does not match (written with another key, or altered)"
    return None
