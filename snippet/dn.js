/*! dn.js | driftnet | Apache-2.0 */
// driftnet's own tracker: first-party, cookieless until consent, no event lost on unload.
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
  var MAX_QUEUE = 500;       // events kept while the collector is unreachable
  var BATCH = 20;            // events per request (a keepalive body must stay under 64 KB)
  var MAX_BODY = 60000;
  var MAX_BACKOFF = 60000;
  var nav = navigator, loc = location, hist = history;
  var cfg = null, held = [], queue = [], busy = 0, timer = 0, backoff = 0, dropped = 0;
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

  function send(type, fields, at) {
    var m = { type: type, messageId: uuid(), timestamp: new Date(at || Date.now()).toISOString(), context: context() }, k;
    if (anon) m.anonymousId = anon;
    if (userId) m.userId = userId;
    for (k in fields) m[k] = fields[k];
    queue.push(m);
    bound();
    // A full batch goes at once, unless a retry is backing off.
    if (queue.length >= BATCH && !backoff && timer) { clearTimeout(timer); timer = 0; }
    if (!timer) timer = setTimeout(flush, queue.length >= BATCH && !backoff ? 0 : cfg.flushMs);
  }

  function bound() {
    while (queue.length > MAX_QUEUE) { queue.shift(); dropped++; }
  }

  function body(batch) {
    return JSON.stringify({ writeKey: cfg.key, sentAt: new Date().toISOString(), batch: batch });
  }

  function flush() {
    timer = 0;
    if (busy || !queue.length) return;
    var batch = queue.splice(0, BATCH), b = body(batch);
    busy = 1;
    fetch(cfg.endpoint, { method: "POST", body: b, keepalive: b.length < MAX_BODY, credentials: "omit" })
      .then(function (r) {
        // Retry what the collector could not take now; a refusal (4xx) is final.
        if (r.status >= 500 || r.status == 408 || r.status == 429) throw r.status;
        backoff = 0;
      })
      .catch(function () {
        queue = batch.concat(queue);
        bound();
        backoff = Math.min(backoff ? backoff * 2 : 1000, MAX_BACKOFF);
      })
      .then(function () {
        busy = 0;
        if (queue.length && !timer) timer = setTimeout(flush, backoff);
      });
  }

  // On leave: what is queued goes out with sendBeacon, which outlives the page.
  function beacon() {
    var batch, b;
    while (queue.length) {
      batch = queue.splice(0, BATCH);
      b = body(batch);
      if (!(nav.sendBeacon && nav.sendBeacon(cfg.endpoint, b))) {
        fetch(cfg.endpoint, { method: "POST", body: b, keepalive: true, credentials: "omit" }).catch(function () {});
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

  function page(name, props) {
    var p = {}, k;
    current = here();
    for (k in current) p[k] = current[k];
    for (k in props) p[k] = props[k];
    send("page", name ? { name: name, properties: p } : { properties: p });
  }

  function navigated() {
    if (loc.href == url) return;
    engagement();
    referrer = url;
    url = loc.href;
    if (cfg.auto) page();
  }

  function setConsent(c) {
    consent = c;
    if (c && c.analytics && !gpcBlocks()) {
      anon = anon || cookie() || uuid();
      cookie(anon, 34560000);  // 400 days, browsers' cap
    } else {
      anon = null;
      cookie("", 0);
    }
    send("track", { event: "Consent Updated", properties: c });
  }

  var ECOMMERCE = {
    product_view: "Product Viewed", list_view: "Product List Viewed", add_to_cart: "Product Added",
    remove_from_cart: "Product Removed", checkout: "Checkout Started", purchase: "Order Completed",
    search: "Products Searched"
  };

  function call(args, at) {
    var name = args[0];
    if (name == "init") return init(args[1] || {});
    if (!cfg) return held.push([args, at]);
    if (name == "page") page(args[1], args[2]);
    else if (name == "track") send("track", { event: String(args[1]), properties: args[2] || {} }, at);
    else if (name == "identify") {
      userId = args[1] == null ? null : String(args[1]);
      send("identify", { traits: args[2] || {} }, at);
    }
    else if (name == "consent") setConsent(args[1]);
    else if (ECOMMERCE[name]) send("track", { event: ECOMMERCE[name], properties: typeof args[1] == "string" ? { query: args[1] } : args[1] || {} }, at);
    else if (w.console) console.warn("dn: unknown call " + name);
  }

  function init(o) {
    if (cfg) return;
    if (!o.key) throw new Error("dn: init needs {key}");
    cfg = {
      key: o.key,
      endpoint: o.endpoint || new URL("/dn/e", script && script.src || loc.href).href,
      auto: o.auto !== false,
      gpc: !!o.gpc,
      flushMs: o.flushMs == null ? 1000 : o.flushMs
    };
    if (!gpcBlocks()) anon = cookie() || null;
    if (cfg.auto) {
      ["pushState", "replaceState"].forEach(function (f) {
        var orig = hist[f];
        hist[f] = function () { var r = orig.apply(this, arguments); navigated(); return r; };
      });
      w.addEventListener("popstate", navigated);
      page();
    }
    d.addEventListener("visibilitychange", function () {
      if (visible()) { shown = Date.now(); }
      else { engagement(); beacon(); }
    });
    w.addEventListener("pagehide", function () { engagement(); shown = 0; beacon(); });
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
