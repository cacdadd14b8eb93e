"""Where each protocol carries the key that names the tenant.

The collector authenticates, it does not interpret: these functions read only the key.
"""

from __future__ import annotations

from urllib.parse import parse_qs

import orjson

from ingest.collector.errors import HttpError
from ingest.collector.hit import Hit, loads, without_param
from ingest.collector.unwrap import DECODED_HEADER, unwrap_posthog


def segment_key(hit: Hit) -> str:
    """Segment / RudderStack / analytics.js: Basic auth user, else ``writeKey`` in body or query."""
    key = hit.basic_auth_user() or hit.param("writeKey")
    if key:
        return key
    if not hit.body.strip():
        raise HttpError(400, "empty body and no write key in Authorization")
    doc = hit.json()
    if not isinstance(doc, dict):
        raise HttpError(400, "body must be a JSON object carrying writeKey, "
                        "or send Authorization: Basic base64(<write key>:)")
    key = doc.get("writeKey")
    if not isinstance(key, str) or not key:
        raise HttpError(401, "no write key: send Authorization: Basic base64(<write key>:) "
                        "or a writeKey field in the body")
    return key


def pixel_key(hit: Hit) -> str:
    """driftnet's GET pixel: ``k=<write key>`` in the query string."""
    key = hit.param("k")
    if not key:
        raise HttpError(401, "no write key: add k=<write key> to the pixel URL")
    return key


def snowplow_key(hit: Hit) -> str | tuple[str, ...]:
    """Snowplow: the app id ``aid``, from the query, else from every event of a POST body.

    Snowplow sends no key; the app id names the tenant. The events of one POST may name
    several app ids (as Snowplow's collector accepts): they are all returned, and the
    collector accepts the request when every one belongs to the same tenant.
    """
    key = hit.param("aid")
    if key:
        return key
    if hit.method != "POST":
        raise HttpError(401, "no app id: set the tracker's appId (aid=<write key>)")
    if not hit.body.strip():
        raise HttpError(400, "empty body and no aid in the query string")
    doc = hit.json()
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list) or not data:
        raise HttpError(400, 'body must be Snowplow payload_data: {"schema": ..., "data": '
                        "[events]} with at least one event")
    found = {_str_or_none(item.get("aid")) if isinstance(item, dict) else None for item in data}
    if None in found or "" in found:
        raise HttpError(401, "no app id: set the tracker's appId (aid=<write key>)")
    keys = sorted(k for k in found if k)
    return keys[0] if len(keys) == 1 else tuple(keys)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def jitsu_key(hit: Hit) -> str:
    """Jitsu (@jitsu/js): the ``X-Write-Key`` header, else Basic auth, else ``writekey`` in the
    query, else as for Segment (the key @jitsu/js puts in the body is masked, ``id:***``).

    A Jitsu key is ``id:secret``, so Basic auth carries it whole (``user:password``); sent
    as a Segment SDK sends a key (``key:``, an empty password), its one trailing colon goes.
    """
    basic = hit.basic_auth()
    return (hit.headers.get("x-write-key") or (basic.removesuffix(":") if basic else None)
            or hit.param("writekey") or segment_key(hit))


def rudderstack_pixel_key(hit: Hit) -> str:
    """RudderStack's pixel API: ``writeKey`` in the query string."""
    key = hit.param("writeKey")
    if not key:
        raise HttpError(401, "no write key: add writeKey=<write key> to the pixel URL")
    return key


def ga4_key(hit: Hit) -> str:
    """GA4 gtag: the measurement id ``tid``, from the query, else from every line of the body."""
    key = hit.param("tid") or _body_lines_param(hit, "tid", "measurement id")
    if not key:
        raise HttpError(401, "no measurement id: gtag sends tid=G-... (configure the tag with "
                        "one of the tenant's write keys)")
    return key


def ga4_mp_key(hit: Hit) -> str:
    """GA4 Measurement Protocol: ``measurement_id`` (web) or ``firebase_app_id`` (apps).

    ``api_secret`` is a credential: it is cut from the query before the envelope is written.
    """
    key = hit.param("measurement_id") or hit.param("firebase_app_id")
    if not key:
        raise HttpError(401, "no measurement id: add measurement_id=G-... to the URL")
    hit.query_string = without_param(hit.query_string, b"api_secret")
    return key


def ua_key(hit: Hit) -> str:
    """Universal Analytics: the property id ``tid``, from the query, else from the body's hit(s)."""
    key = hit.param("tid") or _body_lines_param(hit, "tid", "property id")
    if not key:
        raise HttpError(401, "no property id: add tid=UA-... (one of the tenant's write keys)")
    return key


def posthog_key(hit: Hit) -> str:
    """PostHog: the project token (``api_key``, ``token`` or ``$token``, top-level or in an
    event's properties) inside the decoded payload, which replaces the body (see unwrap)."""
    hit.body = unwrap_posthog(hit, hit.limit)
    try:
        doc = loads(hit.body)
    except orjson.JSONDecodeError as exc:
        steps = hit.headers.get(DECODED_HEADER)
        after = f" (after undoing {steps})" if steps else ""
        raise HttpError(400, f"body is not valid JSON{after}: {exc}") from exc
    if isinstance(doc, dict) and isinstance(doc.get("batch"), list):
        top = _posthog_token(doc, top_only=True)  # /batch: the batch's api_key names them all
        events: list[object] = [doc] if top else doc["batch"]
    elif isinstance(doc, dict):
        events = [doc]
    elif isinstance(doc, list):
        events = doc
    else:
        raise HttpError(400, "body must be a PostHog event, a list of events or a batch object")
    tokens = {t for t in map(_posthog_token, events) if t is not None}
    if len(tokens) > 1:
        raise HttpError(400, f"the events of one request name {len(tokens)} different project "
                        "tokens; send each project's events separately")
    if not tokens:
        raise HttpError(401, "no project token: PostHog events carry api_key, token or $token")
    return tokens.pop()


def _posthog_token(event: object, top_only: bool = False) -> str | None:
    if not isinstance(event, dict):
        return None
    sources = [event]
    props = event.get("properties")
    if not top_only and isinstance(props, dict):
        sources.append(props)
    for source in sources:
        for name in ("api_key", "token", "$token"):
            value = source.get(name)
            if isinstance(value, str) and value:
                return value
    return None


def _body_lines_param(hit: Hit, name: str, what: str) -> str | None:
    """``name`` from every URL-encoded line of a POST body (they must agree), else None."""
    if hit.method != "POST" or not hit.body.strip():
        return None
    found = set()
    for line in hit.body.decode("latin-1").splitlines():
        if line.strip():
            found.add(parse_qs(line, keep_blank_values=True).get(name, [""])[0])
    if len(found) > 1:
        raise HttpError(400, f"the lines of one request name {len(found)} different {what}s "
                        f"({name}); send each property's hits separately")
    return found.pop() if found else None
