"""Mutated hits of every tracker, pipelined over real sockets: each is answered, never with a
5xx; every acknowledged hit is in the raw archive exactly once, in its tenant's; and each
archived hit became events or quarantine rows, none of them the loader's last-resort
"parser error".

The requests are well-formed HTTP (the framing has its own tests: tests/ingest/collector);
what is mutated is what the trackers send: bodies (bytes flipped, cut, repeated, JSON and
URL-encoding tokens put anywhere, gzip of either), query strings, and the request headers
the collector reads (odd values, bytes outside ASCII). A fixed seed: the same
requests each run.
"""

from __future__ import annotations

import gzip
import random
import socket
from collections import Counter

from analytics import connect
from tests.support import KEYS, Server, basic, responses

_JSON = "Content-Type: application/json"
# (method, path, query, body, headers); {key} is the tenant's write key, {auth} its Basic auth
SEEDS: list[tuple[str, str, str, bytes, tuple[str, ...]]] = [
    ("POST", "/v1/track", "",
     b'{"type":"track","event":"Order Completed","anonymousId":"a","properties":{"revenue":'
     b'12.5,"currency":"EUR","products":[{"product_id":"p1","price":3,"quantity":2}]},'
     b'"context":{"page":{"url":"http://x/?utm_source=a&utm_medium=b&gclid=c"}}}',
     (_JSON, "Authorization: {auth}")),
    ("POST", "/v1/page", "",  # a page URL cut inside a character
     b'{"type":"page","anonymousId":"a","writeKey":"{key}",'
     b'"context":{"page":{"url":"http://x/p?utm_source=caf%C3%A9&utm_campaign=%E2%82"}}}',
     (_JSON,)),
    ("POST", "/v1/batch", "",
     b'{"batch":[{"type":"track","event":"Product Viewed","anonymousId":"a","properties":'
     b'{"price":5}},{"type":"identify","userId":"u","traits":{"email":"a@b.c"}}],'
     b'"writeKey":"{key}","context":{"ip":"1.2.3.4"}}', (_JSON,)),
    ("POST", "/dn/e", "",
     b'{"writeKey":"{key}","batch":[{"type":"page","anonymousId":"a",'
     b'"timestamp":"2026-12-07T10:00:00Z"}]}', ("Content-Type: text/plain",)),
    ("GET", "/i", "e=pv&aid={key}&tv=js-3&p=web&url=http%3A%2F%2Fx&duid=d1&sid=s1&vid=1"
     "&dtm=1700000000000&cx=eyJzY2hlbWEiOiJ4IiwiZGF0YSI6W119", b"", ()),
    ("POST", "/com.snowplowanalytics.snowplow/tp2", "",
     b'{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":'
     b'[{"e":"se","aid":"{key}","tv":"js","p":"web","se_ca":"c","se_ac":"a","duid":"d"},'
     b'{"e":"ue","aid":"{key}","tv":"js","p":"web","ue_px":"eyJzY2hlbWEiOiJ4IiwiZGF0YSI6e319"}]}',
     (_JSON,)),
    ("GET", "/g/collect", "v=2&tid={key}&cid=1.2&en=purchase&dl=http%3A%2F%2Fx"
     "%3Futm_source%3Da%26gclid%3Dc&ep.transaction_id=T1&epn.value=12&cu=EUR"
     "&pr1=idP1~nmShoe~pr10~qt2", b"", ()),
    ("POST", "/g/collect", "v=2&tid={key}&cid=1.2",
     b"en=page_view&dl=x\nen=scroll&epn.percent=90", ()),
    ("POST", "/mp/collect", "measurement_id={key}&api_secret=s",
     b'{"client_id":"1","events":[{"name":"purchase","params":{"value":1,"currency":"USD",'
     b'"items":[{"item_id":"i","price":1}]}}]}', ()),
    ("GET", "/collect", "v=1&tid={key}&cid=1&t=pageview&dp=%2F&pa=purchase&tr=9&pr1id=a",
     b"", ()),
    ("POST", "/batch", "",
     b"v=1&tid={key}&cid=1&t=pageview\nv=1&tid={key}&cid=2&t=event&ec=a&ea=b", ()),
    ("POST", "/e", "",
     b'{"api_key":"{key}","event":"$pageview","distinct_id":"d",'
     b'"properties":{"$current_url":"http://x"}}', (_JSON,)),
    ("POST", "/batch", "",
     b'{"api_key":"{key}","batch":[{"event":"x","distinct_id":"d","properties":{"a":[1,2]}}]}',
     (_JSON,)),
    ("GET", "/p.gif", "k={key}&e=view&u=http%3A%2F%2Fx", b"", ()),
]
TOKENS = [b"\\u0000", b"\\ud800", b"\xed\xa0\x80", b"\xff", b"\x00", b'"', b"{", b"[", b"]",
          b"}", b",", b"1e999999", b"-0", b"null", b"true", b"99999999999999999999999999",
          b"NaN", b"\\", b'"":', b'"type":"track"', b'"properties":[]', b'"context":"x"',
          b'"timestamp":"2026-13-45T99:00:00Z"', b'"anonymousId":{"a":1}', b'"messageId":12',
          b'"batch":{}', b"[" * 200, b"%", b"%zz", b"%00", b"&", b"=", b"+", b"~", b"%E2%82",
          b"utm_source=%FF", b"\n", b"\r\n"]

# Headers the collector reads or keeps, each with odd values of its kind (a str is latin-1:
# "\xe9" is the byte 0xe9, outside ASCII)
_URLS = ["", "http://\xe9.example/?a=%ff", "http://127.0.0.1:5", "null", "x" * 4000,
         "https://s.example/?utm_source=%E2%82&gclid=%FF"]
HEADERS: dict[str, list[str]] = {
    "Authorization": ["", "Basic \xe1", "Basic YWNtZS1rZX\xe16", "Basic !!!", "Basic //79",
                      "Bearer x", "basic"],
    "X-Write-Key": ["", "\xe1\xff", "acme-key\xe9"],
    "Cookie": ["sp=\xe1; _ga=GA1.2.3.4", "sp=" + "a" * 3000, "_ga=GA1.1.\xe9", ";;=;"],
    "User-Agent": ["", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) \xe9",
                   "x" * 4000, "Googlebot/2.1"],
    "Referer": _URLS,
    "Origin": _URLS,
    "Content-Type": ["", "text/plain; charset=\xe9", "application/json; charset=utf-16",
                     "multipart/form-data; boundary=x"],
    "Content-Encoding": ["", "identity", "deflate, gzip", "\xe9"],
    "Accept-Language": ["", "en-US,en;q=0.9,\xe9;q=0.1", "*"],
    "X-Forwarded-For": ["", "::1", "1.2.3.4, 5.6.7.8", "999.1.1.1", "fe80::1%eth0", "\xe9"],
    "DNT": ["1", "\xe9"],
    "Sec-GPC": ["1", "?1", "\xe9"],
    "Sec-CH-UA": ['"Chromium";v="120", "Not A Brand";v="99"', '"\xe9";v=1', ""],
    "Sec-CH-UA-Platform": ['"\xe9"', '"Android"', ""],
    "Sec-CH-UA-Model": ['"\xe9"', ""],
}

def _mutated(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        if op == 0 and out:
            out[rng.randrange(len(out))] = rng.randrange(256)
        elif op == 1 and out:
            at = rng.randrange(len(out))
            del out[at:at + rng.randint(1, 12)]
        elif op in (2, 3):
            at = rng.randrange(len(out) + 1)
            out[at:at] = rng.choice(TOKENS)
        elif op == 4 and out:
            a, b = sorted((rng.randrange(len(out)), rng.randrange(len(out))))
            out[a:a] = out[a:b][:2000]
        elif op == 5:
            out = bytearray(bytes(out) * rng.randint(1, 3))
    return bytes(out)


def _hit(rng: random.Random, tenant: str) -> bytes:
    method, path, query, body, headers = rng.choice(SEEDS)
    key = KEYS[tenant]
    query = query.replace("{key}", key)
    body = body.replace(b"{key}", key.encode())
    extra = [h.replace("{auth}", basic(key)) for h in headers]
    roll = rng.random()
    if roll < 0.45 and body:
        body = _mutated(rng, body)
    elif roll < 0.75 and query:
        query = _mutated(rng, query.encode()).decode("latin-1")
    elif roll < 0.85 and body:
        body = gzip.compress(_mutated(rng, body) if roll < 0.8 else body)
        extra.append("Content-Encoding: gzip")
    if rng.random() < 0.3:
        for name in rng.sample(sorted(HEADERS), rng.randint(1, 3)):
            extra = [h for h in extra if not h.lower().startswith(f"{name.lower()}:")]
            extra.append(f"{name}: {rng.choice(HEADERS[name])}")
    target = path + ("?" + query if query else "")
    # the request line stays valid HTTP: anything else is percent-encoded
    target = "".join(c if 33 <= ord(c) < 127 else f"%{ord(c) & 0xFF:02X}" for c in target)
    head = [f"{method} {target} HTTP/1.1", "Host: collector",
            "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0", *extra]
    if method == "POST":
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def test_mutated_hits_are_answered_and_archived_once(server: Server) -> None:
    rng = random.Random(7)
    statuses: Counter[int] = Counter()
    acked: Counter[str] = Counter()
    for _ in range(200):
        tenants = [rng.choice(("acme", "globex")) for _ in range(rng.randint(1, 4))]
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(b"".join(_hit(rng, tenant) for tenant in tenants))
            answers = responses(sock, len(tenants))
        for tenant, (status_line, _, _) in zip(tenants, answers, strict=True):
            status = int(status_line.split()[1])
            statuses[status] += 1
            acked[tenant] += 200 <= status < 300
    assert not [s for s in statuses if s >= 500], statuses
    assert sum(acked.values()) > 200 and statuses[400] > 20, statuses  # both kinds, many
    server.wait_loaded()
    with connect(server.lake, all_tenants=True) as con:
        archived = dict(con.execute(
            "SELECT tenant, count(DISTINCT (source_partition, source_offset, source_index)) "
            "FROM raw GROUP BY ALL").fetchall())
        assert con.execute("SELECT count(*) FROM raw").fetchone() == (sum(archived.values()),)
        unparsed = con.execute("""
            SELECT count(*) FROM raw r
            WHERE NOT EXISTS (SELECT 1 FROM events_all e
                              WHERE (e.source_partition, e.source_offset, e.source_index)
                                    = (r.source_partition, r.source_offset, r.source_index))
              AND NOT EXISTS (SELECT 1 FROM quarantine q
                              WHERE (q.source_partition, q.source_offset, q.source_index)
                                    = (r.source_partition, r.source_offset, r.source_index))
            """).fetchone()
        protocols = {p for (p,) in con.execute("SELECT DISTINCT protocol FROM raw").fetchall()}
        reasons = dict(con.execute("SELECT reason, count(*) FROM quarantine "
                                   "GROUP BY ALL").fetchall())
        last_resort = con.execute("SELECT count(*) FROM quarantine "
                                  "WHERE detail LIKE 'parser error%'").fetchone()
    assert archived == dict(acked)
    assert protocols == {"segment", "dn", "snowplow", "ga4", "ga_universal", "posthog",
                         "pixel"}
    assert unparsed == (0,)
    assert {"payload_format", "schema_violation", "protocol_violation"} <= set(reasons)
    assert last_resort == (0,) and "enrichment_failure" not in reasons
    assert "Traceback" not in server.logs(), server.logs()[-3000:]
