// The inline loader a page pastes (docs/snippet.md): defines dn() at once, queueing every
// call with its time until dn.js has loaded and replays them. Replace the URL with the
// versioned script URL (or the tenant's script alias).
!function (w, d, u, s) {
  w.dn = w.dn || function () { (w.dn.q = w.dn.q || []).push([arguments, Date.now()]); };
  s = d.createElement("script");
  s.async = 1;
  s.src = u;
  d.head.appendChild(s);
}(window, document, "https://collector.example/dn.js");
