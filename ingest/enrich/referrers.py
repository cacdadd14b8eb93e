"""The list of known referrers: host -> (medium, source name).

The base is Snowplow's referer-parser database (``referers.json`` of the ``referer-parser``
package: ~2,100 hosts of search engines, social networks and webmail), looked up the way
Snowplow does: host and path, then the host, then the host without its first label, and so
on (``www.facebook.com`` -> ``facebook.com``). That database has not been republished on
PyPI since 2016, so :data:`SUPPLEMENT` adds the sites and apps that appeared or changed
since (X, Threads, TikTok, Bluesky, Outlook on the web, the Android apps that send
``android-app://`` referrers) and the ad servers whose referrers mean a paid click.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping
from functools import cached_property

import orjson

Medium = str
"""search, social, email, paid or unknown (a known source of no single medium)."""

SUPPLEMENT: Mapping[str, tuple[Medium, str]] = {
    # social
    "x.com": ("social", "Twitter"), "threads.net": ("social", "Threads"),
    "threads.com": ("social", "Threads"), "tiktok.com": ("social", "TikTok"),
    "bsky.app": ("social", "Bluesky"), "mastodon.social": ("social", "Mastodon"),
    "snapchat.com": ("social", "Snapchat"), "discord.com": ("social", "Discord"),
    "web.whatsapp.com": ("social", "WhatsApp"), "telegram.org": ("social", "Telegram"),
    "t.me": ("social", "Telegram"), "linktr.ee": ("social", "Linktree"),
    # email
    "outlook.live.com": ("email", "Outlook.com"), "outlook.office.com": ("email", "Outlook.com"),
    "outlook.office365.com": ("email", "Outlook.com"), "mail.proton.me": ("email", "Proton Mail"),
    "mail.yahoo.co.jp": ("email", "Yahoo! Mail"), "mail.aol.com": ("email", "AOL Mail"),
    "icloud.com": ("email", "iCloud Mail"), "gmx.net": ("email", "GMX"),
    "web.de": ("email", "WEB.DE"),
    # search
    "search.brave.com": ("search", "Brave"), "kagi.com": ("search", "Kagi"),
    "startpage.com": ("search", "Startpage"), "qwant.com": ("search", "Qwant"),
    "perplexity.ai": ("search", "Perplexity"), "chatgpt.com": ("search", "ChatGPT"),
    "baidu.com": ("search", "Baidu"), "m.baidu.com": ("search", "Baidu"),
    "yandex.com": ("search", "Yandex"), "ya.ru": ("search", "Yandex"),
    # paid: ad servers between the ad and the landing page
    "googleadservices.com": ("paid", "Google"), "doubleclick.net": ("paid", "Google"),
    "googlesyndication.com": ("paid", "Google"), "adclick.g.doubleclick.net": ("paid", "Google"),
    "bing.com/aclk": ("paid", "Bing"), "criteo.com": ("paid", "Criteo"),
    "outbrain.com": ("paid", "Outbrain"), "taboola.com": ("paid", "Taboola"),
    # Android apps (android-app://<package>/)
    "com.google.android.gm": ("email", "Gmail"),
    "com.google.android.googlequicksearchbox": ("search", "Google"),
    "com.google.android.apps.searchlite": ("search", "Google"),
    "com.microsoft.office.outlook": ("email", "Outlook.com"),
    "com.facebook.katana": ("social", "Facebook"), "com.facebook.orca": ("social", "Facebook"),
    "com.instagram.android": ("social", "Instagram"),
    "com.linkedin.android": ("social", "LinkedIn"),
    "com.twitter.android": ("social", "Twitter"), "com.pinterest": ("social", "Pinterest"),
    "com.reddit.frontpage": ("social", "Reddit"), "com.zhiliaoapp.musically": ("social", "TikTok"),
    "org.telegram.messenger": ("social", "Telegram"), "com.whatsapp": ("social", "WhatsApp"),
}
"""Hosts (or host/path prefixes, or Android package names) added to Snowplow's list."""


class Referrers:
    """Lookup over Snowplow's referrer database plus :data:`SUPPLEMENT`."""

    @cached_property
    def index(self) -> dict[str, tuple[Medium, str]]:
        """host (or host/path) -> (medium, source)."""
        data = orjson.loads(importlib.resources.files("referer_parser")
                            .joinpath("data/referers.json").read_bytes())
        index: dict[str, tuple[Medium, str]] = {}
        for medium, sources in data.items():
            for source, entry in sources.items():
                for domain in entry.get("domains", ()):
                    index.setdefault(domain.lower().rstrip("/"), (medium, source))
        index.update(SUPPLEMENT)
        return index

    def lookup(self, host: str, path: str = "") -> tuple[Medium, str] | None:
        """(medium, source) of a referrer host and path, else None."""
        index = self.index
        host = host.lower().rstrip(".")
        path = path.rstrip("/")
        first = "/" + path.lstrip("/").split("/", 1)[0] if path.strip("/") else ""
        levels = [host]  # the host, then each parent domain (never a bare TLD alone)
        while "." in levels[-1] and "." in levels[-1].split(".", 1)[1]:
            levels.append(levels[-1].split(".", 1)[1])
        # A host and path entry wins over a host alone at any level: www.bing.com is a
        # search engine, but bing.com/aclk is its ad click (paid).
        candidates = [c for h in levels for c in (h + path, h + first)] if path else []
        candidates += levels
        if "." in host:
            candidates.append(levels[-1].split(".", 1)[1])  # as before: its last label
        for candidate in candidates:
            found = index.get(candidate)
            if found is not None:
                return found
        return None
