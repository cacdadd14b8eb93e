"""The bounded LZ-string decoder, held to the reference implementation (the lzstring package)."""

from __future__ import annotations

import struct

import lzstring  # type: ignore[import-untyped]
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.collector.lzstring import LzStringError, decompress_from_base64

_LZ = lzstring.LZString()


def js_units(text: str) -> str:
    """``text`` as JavaScript holds it: UTF-16 code units (astral characters as surrogates)."""
    data = text.encode("utf-16-le")
    return "".join(chr(u) for u in struct.unpack(f"<{len(data) // 2}H", data))


@given(st.text(max_size=400))
def test_round_trip_against_the_reference(text: str) -> None:
    assert decompress_from_base64(_LZ.compressToBase64(js_units(text)), 10**6) == text


def test_form_decoding_spaces_are_pluses() -> None:
    text = '[{"event":"$pageview","properties":{"token":"t","n":10}}]'
    packed = _LZ.compressToBase64(text)
    assert "+" in packed
    assert decompress_from_base64(packed.replace("+", " "), 1000) == text


def test_bomb_is_refused_at_the_limit() -> None:
    packed = _LZ.compressToBase64("A" * 200_000)
    assert len(packed) < 2000
    with pytest.raises(LzStringError) as err:
        decompress_from_base64(packed, 100_000)
    assert err.value.too_large


@pytest.mark.parametrize("text", ["", "@@@@", "A", "BYUwNmD2AEoTcpA", "////////"])
def test_garbage_is_an_error_not_a_crash(text: str) -> None:
    try:
        decompress_from_base64(text, 1000)
    except LzStringError as exc:
        assert not exc.too_large


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=",
               max_size=200))
def test_random_alphabet_text_never_crashes(text: str) -> None:
    try:
        out = decompress_from_base64(text, 5000)
    except LzStringError:
        return
    assert len(out.encode("utf-16-le")) // 2 <= 5000
