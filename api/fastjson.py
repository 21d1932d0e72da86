"""The API's JSON: orjson where it gives the same document, the standard library otherwise.

orjson parses and writes JSON several times faster than ``json``; on the serving path that is
a measurable share of a request. Where the two would differ, the standard library decides:

- parsing: bodies orjson refuses (``NaN``/``Infinity`` literals, which ``json`` and MLflow's
  scoring server accept; integers beyond 64 bits) are parsed again by ``json``, so the API
  accepts exactly what it accepted before and reports the same errors;
- writing: values orjson does not know are passed to Flask's own ``default`` (dates as HTTP
  dates, decimals, dataclasses...); a value neither handles falls back to ``json`` as well.

Non-finite floats are the one visible difference: orjson writes them as ``null`` (valid
JSON), where ``json`` writes the non-standard ``NaN``.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider
from werkzeug.sansio.response import Response

_OPTIONS = (orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
            | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS)


def dumps_bytes(obj: Any, default: Any = None, sort_keys: bool = False) -> bytes:
    """Compact JSON bytes (orjson; ``default`` for unknown types)."""
    option = _OPTIONS | orjson.OPT_SORT_KEYS if sort_keys else _OPTIONS
    return orjson.dumps(obj, default=default, option=option)


class FastJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider on orjson; deep nesting is a client mistake (400), not a 500."""

    sort_keys = False  # objects keep the order the code builds them in (model, version, ...)

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """JSON text; ``kwargs`` (indent, ...) take the standard library's path."""
        if not kwargs:
            try:
                return dumps_bytes(obj, self.default, self.sort_keys).decode()
            except (TypeError, orjson.JSONEncodeError):
                pass
        return super().dumps(obj, **kwargs)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Parse JSON; what orjson refuses is parsed by ``json`` (same acceptance, same errors)."""
        if not kwargs:
            try:
                return orjson.loads(s)
            except orjson.JSONDecodeError:
                pass
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("the JSON body is nested too deeply") from None

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """A JSON response (compact, as Flask writes it outside debug mode)."""
        obj = self._prepare_response_obj(args, kwargs)
        if self.compact is False or (self.compact is None and self._app.debug):
            return super().response(obj)
        try:
            body = dumps_bytes(obj, self.default, self.sort_keys)
        except (TypeError, orjson.JSONEncodeError):
            return super().response(obj)
        return self._app.response_class(body + b"\n", mimetype=self.mimetype)  # type: ignore[arg-type]
