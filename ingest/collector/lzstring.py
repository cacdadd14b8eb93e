"""LZ-string ``decompressFromBase64`` with an output limit (PostHog's legacy ``lz64`` bodies).

Why not the ``lzstring`` package: it has no output cap, and LZ-string output can grow
quadratically with its input (each dictionary entry is one longer than the last), so a few
kilobytes unpack to gigabytes. PostHog's own capture service caps it the same way. The
decoder follows lz-string 1.4.4 (``_decompress`` with a 6-bit alphabet); tests hold it to the
``lzstring`` package byte for byte.
"""

from __future__ import annotations

from schemas.errors import DriftnetError

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
# Each character carries 6 bits, most significant first; '=' is padding and carries zeros.
_BITS = {c: format(i if c != "=" else 0, "06b") for i, c in enumerate(_ALPHABET)}


class LzStringError(DriftnetError):
    """Not LZ-string data (``too_large`` False), or it unpacks past the limit (True)."""

    def __init__(self, reason: str, *, too_large: bool = False) -> None:
        super().__init__(reason, too_large=too_large)
        self.reason = reason
        self.too_large = too_large


class _Bits:
    """Reads n-bit little-endian numbers off the bit string (LZ-string's bit order)."""

    __slots__ = ("bits", "pos")

    def __init__(self, bits: str) -> None:
        self.bits = bits
        self.pos = 0

    def read(self, n: int) -> int:
        chunk = self.bits[self.pos : self.pos + n]
        self.pos += n
        # Past the end the reference decoder reads zeros.
        return int(chunk[::-1], 2) if "1" in chunk else 0


def decompress_from_base64(text: str, limit: int) -> str:
    """The string LZ-string's ``compressToBase64`` made ``text`` from; at most ``limit`` chars.

    Raises LzStringError when ``text`` is not such data or unpacks to more than ``limit``
    UTF-16 code units (the unit JavaScript counts in).
    """
    text = text.strip().replace(" ", "+")  # form decoding turns '+' into ' '
    try:
        bits = _Bits("".join(_BITS[c] for c in text))
    except KeyError as exc:
        raise LzStringError(f"character {exc.args[0]!r} is not in the lz-string alphabet") from exc
    if not text:
        raise LzStringError("no lz-string data")
    end = 6 * len(text)
    dictionary: list[str] = ["", "", ""]
    enlarge_in, num_bits = 4, 3
    kind = bits.read(2)
    if kind == 2:
        return ""
    if kind not in (0, 1):
        raise LzStringError("lz-string data does not start with a literal")
    w = chr(bits.read(8 if kind == 0 else 16))
    dictionary.append(w)
    out = [w]
    size = 1
    while True:
        if bits.pos >= end:
            raise LzStringError("lz-string data is truncated")
        code = bits.read(num_bits)
        if code in (0, 1):
            dictionary.append(chr(bits.read(8 if code == 0 else 16)))
            code = len(dictionary) - 1
            enlarge_in -= 1
        elif code == 2:
            return _utf16("".join(out))
        if enlarge_in == 0:
            enlarge_in = 1 << num_bits
            num_bits += 1
        if code < len(dictionary):
            entry = dictionary[code]
        elif code == len(dictionary):
            entry = w + w[0]
        else:
            raise LzStringError(f"lz-string code {code} refers past the dictionary")
        size += len(entry)
        if size > limit:
            raise LzStringError(f"lz-string data unpacks past the {limit}-character limit",
                                too_large=True)
        out.append(entry)
        dictionary.append(w + entry[0])
        enlarge_in -= 1
        w = entry
        if enlarge_in == 0:
            enlarge_in = 1 << num_bits
            num_bits += 1


def _utf16(units: str) -> str:
    """Join the UTF-16 code units JavaScript produced (surrogate pairs) into a Python str."""
    try:
        return units.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    except UnicodeDecodeError as exc:
        raise LzStringError("lz-string data holds a lone UTF-16 surrogate") from exc
