"""parse_campaign: page host and path, UTM fields and click ids from the page URL."""

from __future__ import annotations

import pytest

from ingest.enrich.parse_campaign import CLICK_IDS, parse_campaign
from tests.ingest.enrich.helpers import event, run_step


def test_utm_fields_host_and_path() -> None:
    url = ("https://Shop.Acme.example:8443/p/42?utm_source=google&utm_medium=cpc&"
           "utm_campaign=Black+Friday&utm_term=rain%20jacket&utm_content=ad-1#top")
    (row,) = run_step("parse_campaign", parse_campaign, [event(page_url=url)])
    assert (row["page_host"], row["page_path"]) == ("shop.acme.example", "/p/42")
    assert (row["utm_source"], row["utm_medium"], row["utm_campaign"], row["utm_term"],
            row["utm_content"]) == ("google", "cpc", "Black Friday", "rain jacket", "ad-1")


def test_sent_campaign_fields_win() -> None:
    (row,) = run_step("parse_campaign", parse_campaign, [
        event(page_url="https://s.example/?utm_source=url", utm_source="context")])
    assert row["utm_source"] == "context"


@pytest.mark.parametrize("name", CLICK_IDS)
def test_click_ids(name: str) -> None:
    url = f"https://s.example/p/1?utm_source=x&{name}=Cj0KCQiA%2Dabc_123&b=2"
    (row,) = run_step("parse_campaign", parse_campaign, [event(page_url=url)])
    assert (row["click_id_type"], row["click_id"]) == (name, "Cj0KCQiA-abc_123")


def test_click_ids_in_their_order_and_parameters_in_the_fragment() -> None:
    """The click id is the first of CLICK_IDS the URL holds, not the first in the URL (a
    Google Ads click that also carries fbclid is Google's, wherever fbclid sits); UTM
    parameters and click ids are read from the fragment too, wherever they sit in it."""
    out = run_step("parse_campaign", parse_campaign, [
        event(0, page_url="https://s.example/p?fbclid=AAA&gclid=BBB"),
        event(1, page_url="https://s.example/p?gclid=BBB&fbclid=AAA"),
        event(2, page_url="https://s.example/p#utm_medium=cpc&utm_source=google"),
        event(3, page_url="https://s.example/#/p?utm_source=news&utm_medium=email&msclkid=M"),
    ])
    assert [(r["click_id_type"], r["click_id"]) for r in out] == [
        ("gclid", "BBB"), ("gclid", "BBB"), (None, None), ("msclkid", "M")]
    assert [(r["utm_source"], r["utm_medium"]) for r in out] == [
        (None, None), (None, None), ("google", "cpc"), ("news", "email")]


def test_no_click_id_and_no_url() -> None:
    out = run_step("parse_campaign", parse_campaign, [
        event(0, page_url="https://s.example/?q=shoes&notgclid=1"), event(1)])
    assert [(r["click_id_type"], r["click_id"]) for r in out] == [(None, None), (None, None)]
    assert out[1]["page_host"] is None and out[1]["utm_source"] is None


def test_values_that_do_not_decode_are_kept_as_sent() -> None:
    """A URL cut inside a percent-encoded character (``%E2%82``, two bytes of three): the
    value as sent, and the event enriched, not failed; its neighbours decode as usual."""
    out = run_step("parse_campaign", parse_campaign, [
        event(0, page_url="https://s.example/?utm_source=%E2%82a&utm_medium=e%2Dmail"
                          "&gclid=x%FF1"),
        event(1, page_url="https://s.example/?utm_source=caf%C3%A9")])
    assert (out[0]["utm_source"], out[0]["utm_medium"]) == ("%E2%82a", "e-mail")
    assert (out[0]["click_id_type"], out[0]["click_id"]) == ("gclid", "x%FF1")
    assert out[1]["utm_source"] == "café"
