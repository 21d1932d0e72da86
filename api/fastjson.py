"""The API's JSON provider: :mod:`mlwb.fastjson` (orjson, the standard library as fallback).

Flask's own provider would parse and write every body with ``json``; on the serving path
that is a measurable share of a request. Parsing accepts exactly what ``json`` accepts and
reports the same errors; writing passes unknown values to Flask's ``default`` (dates as
HTTP dates, decimals, dataclasses...).
"""

from __future__ import annotations

from typing import Any

from flask.json.provider import DefaultJSONProvider
from werkzeug.sansio.response import Response

from mlwb import fastjson


class FastJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider on orjson; deep nesting is a client mistake (400), not a 500."""

    sort_keys = False  # objects keep the order the code builds them in (model, version, ...)

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """JSON text; ``kwargs`` (indent, ...) take the standard library's path."""
        if not kwargs:
            return fastjson.dumps(obj, self.default, self.sort_keys).decode()
        return super().dumps(obj, **kwargs)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Parse JSON as ``json`` would; pathological nesting raises ValueError (a 400)."""
        try:
            return fastjson.loads(s) if not kwargs else super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("the JSON body is nested too deeply") from None

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """A JSON response (compact, as Flask writes it outside debug mode)."""
        obj = self._prepare_response_obj(args, kwargs)
        if self.compact is False or (self.compact is None and self._app.debug):
            return super().response(obj)
        body = fastjson.dumps(obj, self.default, self.sort_keys)
        return self._app.response_class(body + b"\n", mimetype=self.mimetype)  # type: ignore[arg-type]
