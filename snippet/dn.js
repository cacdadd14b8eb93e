/*! dn.js | driftnet | Apache-2.0 */
// driftnet's own tracker: first-party, cookieless until consent, what is queued sent on
// hide and unload as far as the browser allows (64 KB of keepalive: docs/snippet.md).
// Built by snippet/build.mjs into ingest/collector/static/dn.js (docs/snippet.md).
//
// Messages follow the Segment spec (docs/protocols.md), batched as
// {"writeKey", "sentAt", "batch": [...]} and POSTed as text/plain (no CORS preflight).
// Until consent no identifier is stored or sent: the collector derives a daily visitor id
// from (tenant, IP, User-Agent, a salt rotated daily). On consent a random first-party id is
// kept in the _dn_id cookie and sent as anonymousId; events sent before stay cookieless.
(function (w, d) {
  "use strict";
  var VERSION = "1.0.0";
  var COOKIE = "_dn_id";
  if (w.dn && w.dn.version) return;  // loaded twice: the first copy and its queue stay
  var MAX_QUEUE = 500;       // events kept while the collector is unreachable
  var BATCH = 20;            // events per request
  var MAX_BODY = 400000;     // bytes per request: the collector takes 500 KB (max_request_bytes)
  // Bytes of keepalive requests in flight at once: Chromium allows 64 KB per page, all
  // requests and beacons together, and refuses more.
  var KEEPALIVE = 60000;
  var MAX_BACKOFF = 60000;
  var nav = navigator, loc = location, hist = history;
  var cfg = null, held = [], queue = [], busy = 0, timer = 0, backoff = 0, dropped = 0;
  var seq = 0, inflight = 0, envelope = 0;
  var anon = null, userId = null, consent = null;
  var url = loc.href, referrer = d.referrer, shown = visible() ? Date.now() : 0, engaged = 0;
  var current = null;  // the page of the last page view: the context of the events after it
  var script = d.currentScript;

  function visible() { return d.visibilityState !== "hidden"; }

  function uuid() {
    if (w.crypto && crypto.randomUUID) return crypto.randomUUID();
    var b = crypto.getRandomValues(new Uint8Array(16)), s = "", i = 0;
    b[6] = b[6] & 15 | 64;
    b[8] = b[8] & 63 | 128;
    for (; i < 16; i++) s += (i == 4 || i == 6 || i == 8 || i == 10 ? "-" : "") + (b[i] + 256).toString(16).slice(1);
    return s;
  }

  function cookie(value, age) {
    if (value === undefined) {
      var m = d.cookie.match(/(?:^|; )_dn_id=([\w-]{8,64})/);
      return m && m[1];
    }
    d.cookie = COOKIE + "=" + value + "; Max-Age=" + age + "; Path=/; SameSite=Lax" +
      (loc.protocol == "https:" ? "; Secure" : "");
  }

  // Global Privacy Control, when the tenant's snippet asks for it (init {gpc: true}).
  function gpcBlocks() { return cfg.gpc && nav.globalPrivacyControl === true; }

  function here() {
    return { url: loc.href, path: loc.pathname, search: loc.search, title: d.title, referrer: referrer };
  }

  function context() {
    var p = current || here(), q = new URLSearchParams(p.search), campaign = {}, n = 0, ctx, s = w.screen;
    ["source", "medium", "campaign", "term", "content"].forEach(function (f) {
      var v = q.get("utm_" + f);
      if (v) { campaign[f == "campaign" ? "name" : f] = v; n++; }
    });
    ctx = {
      page: p,
      userAgent: nav.userAgent,
      locale: nav.language,
      timezone: Intl.DateTimeFormat().resolvedOptions().timeZone,
      screen: { width: s.width, height: s.height, innerWidth: w.innerWidth, innerHeight: w.innerHeight, density: w.devicePixelRatio },
      library: { name: "dn.js", version: VERSION },
      idMode: anon ? "persistent" : "cookieless"
    };
    if (n) ctx.campaign = campaign;
    if (consent) ctx.consent = consent;
    if (dropped) { ctx.dropped = dropped; dropped = 0; }
    return ctx;
  }

  function size(s) { return new Blob([s]).size; }

  // An event is serialised when it is made: one that JSON cannot write (a cycle, a BigInt)
  // is refused alone, counted in the next event's context.dropped, and never spoils a batch.
  function send(type, fields, at) {
    var m = { type: type, messageId: uuid(), timestamp: new Date(at || Date.now()).toISOString(), context: context() }, k, s;
    if (anon) m.anonymousId = anon;
    if (userId) m.userId = userId;
    for (k in fields) m[k] = fields[k];
    try { s = JSON.stringify(m); } catch (e) {
      dropped += (m.context.dropped || 0) + 1;
      if (w.console) console.warn("dn: dropped " + (m.event || type) + ": " + e);
      return;
    }
    queue.push({ i: seq++, s: s, n: size(s) });
    bound();
    // A full batch goes at once, unless a retry is backing off.
    if (queue.length >= BATCH && !backoff && timer) { clearTimeout(timer); timer = 0; }
    if (!timer) timer = setTimeout(flush, queue.length >= BATCH && !backoff ? 0 : cfg.flushMs);
  }

  function bound() {
    while (queue.length > MAX_QUEUE) { queue.shift(); dropped++; }
  }

  // Puts unsent events back, in the order they were made (requests may fail out of order).
  function requeue(batch) {
    queue = batch.concat(queue).sort(function (a, b) { return a.i - b.i; });
    bound();
  }

  function body(batch) {
    return '{"writeKey":' + JSON.stringify(cfg.key) + ',"sentAt":"' + new Date().toISOString() +
      '","batch":[' + batch.map(function (e) { return e.s; }).join() + "]}";
  }

  // Takes queued events, in order, while they fit in count and bytes; an event that does not
  // fit waits for the next request. The first is taken whatever its size if force is set:
  // the collector quarantines an event over its limit (reason size) or refuses it (413).
  function take(count, bytes, force) {
    var n = envelope, out = [];
    queue = queue.filter(function (e) {
      if (out.length < count && (n + e.n < bytes || force && !out.length)) { n += e.n + 1; out.push(e); return 0; }
      return 1;
    });
    return out;
  }

  // Sends a batch, with keepalive (so it outlives the page) while the page's keepalive budget
  // allows. What fails or is answered 408, 429 or 5xx goes back into the queue, in order, and
  // is retried with backoff; another 4xx is final.
  function post(batch) {
    var b = body(batch), n = size(b), keep = n < KEEPALIVE - inflight;
    if (keep) inflight += n;
    return fetch(cfg.endpoint, { method: "POST", body: b, keepalive: keep, credentials: "omit" })
      .then(function (r) {
        if (r.status >= 500 || r.status == 408 || r.status == 429) throw r.status;
        backoff = 0;
      })
      .catch(function () {
        requeue(batch);
        backoff = Math.min(backoff ? backoff * 2 : 1000, MAX_BACKOFF);
      })
      .then(function () {
        if (keep) inflight -= n;
        later();
      });
  }

  function later() {
    if (queue.length && !timer && !busy) timer = setTimeout(flush, backoff);
  }

  function flush() {
    timer = 0;
    if (busy || !queue.length) return;
    busy = 1;
    post(take(BATCH, MAX_BODY, 1)).then(function () { busy = 0; later(); });
  }

  // On hide or leave: what is queued goes out at once, backoff or not, with keepalive, as far
  // as the page's keepalive budget allows; the rest stays queued and, if the page stays,
  // follows as soon as that request is answered. Where fetch has no keepalive, sendBeacon,
  // until it refuses.
  function leave() {
    var batch;
    if (w.Request && "keepalive" in Request.prototype) {
      batch = take(MAX_QUEUE, KEEPALIVE - inflight);
      if (batch.length) { clearTimeout(timer); timer = 0; post(batch); }
    } else {
      while ((batch = take(MAX_QUEUE, KEEPALIVE)).length) {
        if (!(nav.sendBeacon && nav.sendBeacon(cfg.endpoint, body(batch)))) return requeue(batch);
      }
    }
  }

  function engagement() {
    if (shown) { engaged += Date.now() - shown; shown = visible() ? Date.now() : 0; }
    if (engaged > 0) {
      send("track", { event: "Page Engaged", properties: { engaged_ms: engaged, url: url } });
      engaged = 0;
    }
  }

  function page(name, props, at) {
    var p = {}, k;
    current = here();
    for (k in current) p[k] = current[k];
    for (k in props) p[k] = props[k];
    send("page", name ? { name: name, properties: p } : { properties: p }, at);
  }

  function navigated() {
    if (loc.href == url) return;
    engagement();
    referrer = url;
    url = loc.href;
    if (cfg.auto) page();
  }

  function setConsent(c, at) {
    consent = c;
    if (c && c.analytics && !gpcBlocks()) {
      anon = anon || cookie() || uuid();
      cookie(anon, 34560000);  // 400 days, browsers' cap
    } else {
      anon = null;
      cookie("", 0);
    }
    send("track", { event: "Consent Updated", properties: c }, at);
  }

  var ECOMMERCE = {
    product_view: "Product Viewed", list_view: "Product List Viewed", add_to_cart: "Product Added",
    remove_from_cart: "Product Removed", checkout: "Checkout Started", purchase: "Order Completed",
    search: "Products Searched"
  };

  function call(args, at) {
    var name = args[0];
    if (name == "init") return init(args[1] || {}, at);
    if (!cfg) return held.push([args, at]);
    if (name == "page") page(args[1], args[2], at);
    else if (name == "track") send("track", { event: String(args[1]), properties: args[2] || {} }, at);
    else if (name == "identify") {
      userId = args[1] == null ? null : String(args[1]);
      send("identify", { traits: args[2] || {} }, at);
    }
    else if (name == "consent") setConsent(args[1], at);
    else if (ECOMMERCE[name]) send("track", { event: ECOMMERCE[name], properties: typeof args[1] == "string" ? { query: args[1] } : args[1] || {} }, at);
    else if (w.console) console.warn("dn: unknown call " + name);
  }

  function init(o, at) {
    if (cfg) return;
    if (!o.key) throw new Error("dn: init needs {key}");
    cfg = {
      key: o.key,
      endpoint: o.endpoint || new URL("/dn/e", script && script.src || loc.href).href,
      auto: o.auto !== false,
      gpc: !!o.gpc,
      flushMs: o.flushMs == null ? 1000 : o.flushMs
    };
    envelope = size(body([]));
    if (!gpcBlocks()) anon = cookie() || null;
    if (cfg.auto) {
      ["pushState", "replaceState"].forEach(function (f) {
        var orig = hist[f];
        hist[f] = function () { var r = orig.apply(this, arguments); navigated(); return r; };
      });
      w.addEventListener("popstate", navigated);
      page(0, 0, at);
    }
    d.addEventListener("visibilitychange", function () {
      if (visible()) { shown = Date.now(); }
      else { engagement(); leave(); }
    });
    w.addEventListener("pagehide", function () { engagement(); shown = 0; leave(); });
    w.addEventListener("pageshow", function (e) { if (e.persisted) shown = Date.now(); });
    w.addEventListener("online", function () { backoff = 0; clearTimeout(timer); timer = 0; flush(); });
    var h = held;
    held = [];
    h.forEach(function (c) { call(c[0], c[1]); });
  }

  var q = (w.dn && w.dn.q) || [];
  w.dn = function () { call(arguments); };
  w.dn.version = VERSION;
  q.forEach(function (c) { call(c[0], c[1]); });
})(window, document);
