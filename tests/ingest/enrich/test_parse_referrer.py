"""parse_referrer on real referrers: search engines, social networks, mail, ads, internal."""

from __future__ import annotations

import pytest

from ingest.enrich import Chain
from ingest.enrich.config import ReferrerSettings
from ingest.enrich.parse_campaign import parse_campaign
from ingest.enrich.parse_referrer import ParseReferrer, ReferrerClassifier
from tests.ingest.enrich.helpers import event, run_chain

PAGE = "https://shop.acme.example/p/42"

CASES = [
    # (referrer, page url, class, source)
    ("https://www.google.com/", PAGE, "search", "Google"),
    ("https://www.google.co.uk/search?q=rain+jacket", PAGE, "search", "Google"),
    ("https://www.google.de/", PAGE, "search", "Google"),
    ("https://www.bing.com/search?q=shoes&form=QBLH", PAGE, "search", "Bing"),
    # an ad click through Bing's www host: the host-and-path entry bing.com/aclk wins
    # over the host www.bing.com (search) of the level before it
    ("https://www.bing.com/aclk?ld=e8x&u=a1aHR0cHM", PAGE, "paid", "Bing"),
    ("https://duckduckgo.com/", PAGE, "search", "DuckDuckGo"),
    ("https://search.yahoo.com/search?p=shoes", PAGE, "search", "Yahoo!"),
    ("https://yandex.ru/search/?text=shoes", PAGE, "search", "Yandex"),
    ("https://www.ecosia.org/search?q=shoes", PAGE, "search", "Ecosia"),
    ("https://www.facebook.com/", PAGE, "social", "Facebook"),
    ("https://l.facebook.com/l.php?u=https%3A%2F%2Fshop.acme.example", PAGE, "social",
     "Facebook"),
    ("https://m.facebook.com/", PAGE, "social", "Facebook"),
    ("https://t.co/AbCdEf1234", PAGE, "social", "Twitter"),
    ("https://x.com/", PAGE, "social", "Twitter"),
    ("https://www.linkedin.com/feed/", PAGE, "social", "LinkedIn"),
    ("https://lnkd.in/eXyZ", PAGE, "social", "LinkedIn"),
    ("https://www.instagram.com/", PAGE, "social", "Instagram"),
    ("https://l.instagram.com/?u=https%3A%2F%2Fshop.acme.example", PAGE, "social", "Instagram"),
    ("https://www.reddit.com/r/running/", PAGE, "social", "Reddit"),
    ("https://www.tiktok.com/", PAGE, "social", "TikTok"),
    ("https://mail.google.com/", PAGE, "email", "Gmail"),
    ("https://outlook.live.com/", PAGE, "email", "Outlook.com"),
    ("https://mail.yahoo.com/d/folders/1", PAGE, "email", "Yahoo! Mail"),
    ("android-app://com.google.android.gm/", PAGE, "email", "Gmail"),
    ("android-app://com.google.android.googlequicksearchbox/", PAGE, "search", "Google"),
    ("https://shop.acme.example/c/shoes", PAGE, "internal", None),
    ("https://www.shop.acme.example/", PAGE, "internal", None),
    (None, PAGE, "direct", None),
    ("", PAGE, "direct", None),
    ("https://blog.example.org/best-gear", PAGE, "other", "blog.example.org"),
    ("https://www.example.net/", PAGE, "other", "example.net"),
    ("https://support.google.com/", PAGE, "other", "Google"),  # Google, but not a search
    ("https://www.google.com/", PAGE + "?gclid=Cj0KCQ", "paid", "Google"),
    (None, PAGE + "?gclid=Cj0KCQ", "paid", "Google"),
    ("https://www.bing.com/", PAGE + "?msclkid=8f2c", "paid", "Bing"),
    ("https://www.google.com/", PAGE + "?utm_source=google&utm_medium=cpc", "paid", "Google"),
    (None, PAGE + "?utm_source=meta&utm_medium=paid_social", "paid", "meta"),
    ("https://www.googleadservices.com/pagead/aclk?sa=L", PAGE, "paid", "Google"),
    # fbclid rides on organic Facebook links too: social, not paid.
    ("https://www.facebook.com/", PAGE + "?fbclid=IwAR0abc", "social", "Facebook"),
    (None, PAGE + "?utm_source=newsletter&utm_medium=email", "email", "newsletter"),
    (None, PAGE + "?utm_source=fb&utm_medium=social", "direct", None),
    ("https://blog.example.org/", PAGE + "?utm_source=fb&utm_medium=social", "social", "fb"),
]


@pytest.mark.parametrize(("referrer", "page", "klass", "source"), CASES,
                         ids=[f"{c[2]}-{i}" for i, c in enumerate(CASES)])
def test_referrer_class_and_source(referrer: str | None, page: str, klass: str,
                                   source: str | None) -> None:
    chain = Chain([("parse_campaign", parse_campaign), ("parse_referrer", ParseReferrer())])
    (row,) = run_chain(chain, [event(referrer=referrer, page_url=page)])
    assert (row["referrer_class"], row["referrer_source"]) == (klass, source)


def test_internal_hosts_globally_and_per_tenant() -> None:
    step = ParseReferrer(ReferrerSettings(internal_hosts=("paypal.com",)),
                         {"acme": ("checkout.acme.example",)})
    chain = Chain([("parse_campaign", parse_campaign), ("parse_referrer", step)])
    rows = [event(0, referrer="https://www.paypal.com/checkoutnow", page_url=PAGE),
            event(1, referrer="https://checkout.acme.example/pay", page_url=PAGE),
            event(2, tenant="globex", referrer="https://checkout.acme.example/pay",
                  page_url=PAGE)]
    out = run_chain(chain, rows)
    assert [r["referrer_class"] for r in out] == ["internal", "internal", "other"]


def test_sent_classes_are_kept() -> None:
    chain = Chain([("parse_referrer", ParseReferrer())])
    (row,) = run_chain(chain, [event(referrer="https://www.google.com/",
                                     referrer_class="partner", referrer_source="Acme")])
    assert (row["referrer_class"], row["referrer_source"]) == ("partner", "Acme")


def test_garbage_referrers_do_not_fail() -> None:
    classifier = ReferrerClassifier()
    for referrer in ("http://[::1", "not a url", "https://", "://x", "\x00\x01"):
        klass, _ = classifier.classify("acme", referrer, "shop.acme.example", None, None, None)
        assert klass == "other"
