"""Prediction ids signed by the server, so they can be checked without a lookup.

A prediction id is ``<request id>-<row>.<mac>``: the request id is random, ``row`` is the
row's index in its request and ``mac`` is a truncated HMAC-SHA256 of the rest under the
server's secret key. Feedback can then be accepted (and a forged id refused) before the
prediction itself has reached the lake.
"""

from __future__ import annotations

import hmac
import os
import random
import re

MAC_CHARS = 20  # 80 bits of HMAC: forging one id takes ~2**79 guesses
ID_RE = re.compile(r"^([0-9a-f]{24})-([0-9]{1,6})\.([0-9a-f]{20})\Z")  # 20 = MAC_CHARS


# Uniqueness, not secrecy, is what a request id needs (prediction ids are protected by their
# MAC): a generator seeded from the OS saves a system call per request, and reseeding it in
# every forked child keeps two gunicorn workers from ever sharing a sequence.
_rng = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _rng.seed(os.urandom(32)))


def new_request_id() -> str:
    """A fresh random request id (24 hex characters, 96 random bits)."""
    return f"{_rng.getrandbits(96):024x}"


class PredictionIds:
    """Signs and checks prediction ids with one key."""

    def __init__(self, key: str) -> None:
        self._key = key.encode()

    def _mac(self, body: str) -> str:
        return hmac.digest(self._key, body.encode(), "sha256").hex()[:MAC_CHARS]

    def sign(self, request_id: str, row: int) -> str:
        """The prediction id of row ``row`` of request ``request_id``."""
        body = f"{request_id}-{row}"
        return f"{body}.{self._mac(body)}"

    def for_request(self, request_id: str, rows: int) -> list[str]:
        """Ids for every row of a request."""
        return [self.sign(request_id, i) for i in range(rows)]

    def verify(self, prediction_id: str) -> bool:
        """True if ``prediction_id`` was issued by a server holding this key."""
        if not isinstance(prediction_id, str):
            return False
        m = ID_RE.match(prediction_id)
        if m is None:
            return False
        body = f"{m.group(1)}-{m.group(2)}"
        return hmac.compare_digest(self._mac(body), m.group(3))

    @staticmethod
    def request_of(prediction_id: str) -> str:
        """The request id part of a prediction id."""
        return prediction_id.split("-", 1)[0]
