"""User-agent client hints: the Sec-CH-UA headers and ``navigator.userAgentData``.

Chromium browsers freeze their User-Agent string (always ``Windows NT 10.0``, ``Android 10;
K``, a ``.0.0.0`` version) and tell the truth in client hints instead: the low-entropy
``Sec-CH-UA`` (brands), ``Sec-CH-UA-Mobile`` and ``Sec-CH-UA-Platform`` headers on every
secure request, and, when asked, ``Sec-CH-UA-Platform-Version`` or the JavaScript
``navigator.userAgentData`` that Segment's analytics.js sends as ``context.userAgentData``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

_BRAND = re.compile(r'"((?:[^"\\]|\\.)*)"\s*;\s*v\s*=\s*"((?:[^"\\]|\\.)*)"')
# GREASE brands ("Not_A Brand", "Not/A)Brand", ...) exist to be ignored.
_GREASE = re.compile(r"not.{0,3}a.{0,3}brand", re.IGNORECASE)

BRAND_FAMILIES = {
    "Google Chrome": "Chrome", "Microsoft Edge": "Edge", "Opera": "Opera", "Opera GX": "Opera",
    "Brave": "Brave", "Vivaldi": "Vivaldi", "YaBrowser": "Yandex Browser",
    "Samsung Internet": "Samsung Internet", "HeadlessChrome": "HeadlessChrome",
    "Chromium": "Chromium", "Android WebView": "Chrome Mobile WebView",
}
"""Client-hint brand -> the family name ua-parser uses for the same browser."""

PLATFORMS = {
    "windows": "Windows", "macos": "Mac OS X", "linux": "Linux", "android": "Android",
    "chrome os": "Chrome OS", "chromeos": "Chrome OS", "ios": "iOS",
}
"""Sec-CH-UA-Platform -> ua-parser's OS family."""


@dataclass(frozen=True)
class Hints:
    """What the client hints say, normalised; None where they say nothing."""

    brands: tuple[tuple[str, str], ...] = ()
    """(brand, version), GREASE brands removed, in the order sent."""
    mobile: bool | None = None
    platform: str | None = None
    platform_version: str | None = None

    @property
    def brand(self) -> tuple[str, str] | None:
        """The most specific brand: anything but plain Chromium, else Chromium."""
        for brand in self.brands:
            if brand[0] != "Chromium":
                return brand
        return self.brands[0] if self.brands else None

    @property
    def empty(self) -> bool:
        """True when no hint was sent."""
        return not self.brands and self.mobile is None and self.platform is None


def _unquote(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().strip('"').strip()
    return value or None


def parse_brands(header: str | None) -> tuple[tuple[str, str], ...]:
    """``"Chromium";v="131", "Not_A Brand";v="24"`` -> (("Chromium", "131"),)."""
    if not header:
        return ()
    return tuple((b, v) for b, v in _BRAND.findall(header) if not _GREASE.search(b))


def from_headers(sec_ch_ua: str | None, mobile: str | None, platform: str | None,
                 platform_version: str | None) -> Hints:
    """Hints from the Sec-CH-UA request headers (structured-header strings)."""
    m = (mobile or "").strip()
    return Hints(
        brands=parse_brands(sec_ch_ua),
        mobile=True if m == "?1" else False if m == "?0" else None,
        platform=_unquote(platform),
        platform_version=_unquote(platform_version),
    )


def from_user_agent_data(document: str | None) -> Hints:
    """Hints from a ``navigator.userAgentData`` JSON object (Segment context.userAgentData)."""
    if not document:
        return Hints()
    try:
        data = orjson.loads(document)
    except orjson.JSONDecodeError:
        return Hints()
    if not isinstance(data, dict):
        return Hints()
    brands: list[tuple[str, str]] = []
    listed = data.get("fullVersionList") or data.get("brands") or []
    for item in listed if isinstance(listed, list) else []:
        if (isinstance(item, dict) and isinstance(item.get("brand"), str)
                and not _GREASE.search(item["brand"])):
            brands.append((item["brand"], str(item.get("version") or "")))
    mobile = data.get("mobile")
    platform = data.get("platform")
    version = data.get("platformVersion")
    return Hints(
        brands=tuple(brands),
        mobile=mobile if isinstance(mobile, bool) else None,
        platform=platform.strip() or None if isinstance(platform, str) else None,
        platform_version=version.strip() or None if isinstance(version, str) else None,
    )


def merge(first: Hints, second: Hints) -> Hints:
    """``first``'s hints, completed by ``second``'s where ``first`` says nothing."""
    return Hints(
        brands=first.brands or second.brands,
        mobile=first.mobile if first.mobile is not None else second.mobile,
        platform=first.platform or second.platform,
        platform_version=first.platform_version or second.platform_version,
    )


def os_family(hints: Hints) -> str | None:
    """The OS family the platform hint names, in ua-parser's words."""
    if hints.platform is None:
        return None
    return PLATFORMS.get(hints.platform.lower())


def os_version(hints: Hints) -> str | None:
    """The OS version from Sec-CH-UA-Platform-Version, as people name it.

    Windows reports its UniversalApiContract version: 13 and above is Windows 11, 1 to 10
    is Windows 10, 0 is 7, 8 or 8.1 (unknown).
    """
    version = hints.platform_version
    if not version:
        return None
    family = os_family(hints)
    if family == "Windows":
        major = version.split(".", 1)[0]
        # ASCII digits only: str.isdigit() is also true of '²' and '④', which int() refuses.
        if not (major.isascii() and major.isdigit()) or int(major) == 0:
            return None
        return "11" if int(major) >= 13 else "10"
    parts = version.split(".")
    while len(parts) > 1 and parts[-1] == "0":
        parts.pop()
    return ".".join(parts)
