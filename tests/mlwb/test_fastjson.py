"""mlwb.fastjson reads and writes what ``json`` does, only faster where orjson agrees."""

from __future__ import annotations

import json
import math

import pytest

from mlwb import fastjson
from mlwb.tables import canonical_json, stored_json


def test_big_integers_keep_every_digit() -> None:
    text = '{"label": 123456789012345678901234567890, "small": 7}'
    assert fastjson.loads(text) == {"label": 123456789012345678901234567890, "small": 7}
    assert fastjson.loads(text.encode())["label"] == 123456789012345678901234567890
    assert fastjson.dumps({"n": 2**70}) == b'{"n":1180591620717411303424}'
    assert fastjson.loads("[-9223372036854775809]") == [-9223372036854775809]
    assert fastjson.loads("[-9223372036854775808, 18446744073709551615]") == [
        -9223372036854775808, 18446744073709551615]
    for edge in ("[-18446744073709551616]", "[99999999999999999999]", "[-9223372036854775809]"):
        assert fastjson.needs_stdlib(edge) and fastjson.needs_stdlib(edge.encode())
    assert fastjson.needs_stdlib('{"\ud83d": 1e400000000000000000000}')  # lone surrogate
    for short in ("[1234567890123456789, 1.234567890123456789]", '["\u0661" ]', "[]"):
        assert not fastjson.needs_stdlib(short)
    assert fastjson.loads(bytearray(b"[12345678901234567890123]")) == [12345678901234567890123]


def test_what_json_accepts_is_accepted() -> None:
    assert math.isnan(fastjson.loads('{"x": NaN}')["x"])
    assert fastjson.loads('[Infinity]') == [math.inf]
    for bad in ('{"x": 1', "", "[1,]"):
        with pytest.raises(json.JSONDecodeError):  # the standard library's error and message
            fastjson.loads(bad)


def test_lone_surrogates_and_unknown_types_are_written() -> None:
    assert json.loads(fastjson.dumps({"text": "\ud83d"})) == {"text": "\ud83d"}

    class Thing:
        def __str__(self) -> str:
            return "thing"

    assert fastjson.dumps({"t": Thing()}, default=str) == b'{"t":"thing"}'


def test_stored_json_is_sorted_and_compact() -> None:
    value = {"b": [1, 2.5, None], "a": {"y": True, "x": "é"}}
    assert json.loads(stored_json(value)) == value
    assert stored_json(value) == '{"a":{"x":"é","y":true},"b":[1,2.5,null]}'
    # The audit chain's text is the standard library's and does not change.
    assert canonical_json(value) == '{"a":{"x":"\\u00e9","y":true},"b":[1,2.5,null]}'
