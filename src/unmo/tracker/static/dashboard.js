/* unmo Customer Success Tracker dashboard.
 * Reads GET /v1/dashboard every 10 s and the live feedback feed (GET /v1/feedback/stream, server-sent
 * events read through fetch so that the admin token travels as a Bearer header, which EventSource
 * cannot send).  Everything is built with textContent: customer-supplied text is never parsed as HTML.
 * Charts: uPlot (vendored, MIT), no asset from the internet, so the page works offline. */
"use strict";

(function () {
  const REFRESH_MS = 10000;
  const TOKEN_KEY = "unmo-tracker-token";
  const COLORS = ["#2f6fdf", "#e8772e", "#1a9c6b", "#a24bd6", "#d23c5d", "#3aa0b8", "#7a8a1f"];
  let token = null;
  let timer = null;
  let feedAbort = null;
  const charts = {};

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function fmt(value, unit) {
    if (value === null || value === undefined) return "no data";
    switch (unit) {
      case "ratio": return (100 * value).toFixed(value > 0.99 && value < 1 ? 2 : 1) + " %";
      case "seconds": return value >= 60 ? (value / 60).toFixed(1) + " min" : value.toFixed(value < 10 ? 2 : 1) + " s";
      case "usd": return "$" + Math.round(value).toLocaleString("en-US");
      case "ms": return value.toFixed(1) + " ms";
      case "records/day": return Math.round(value).toLocaleString("en-US") + " /day";
      default: return Number(value).toLocaleString("en-US");
    }
  }

  function targetText(c) {
    if (c.target === null) {
      return c.key === "throughput" ? "expected " + fmt(c.expected_per_day, "records/day") : "no target";
    }
    return (c.op === ">=" ? "target ≥ " : "target ≤ ") + fmt(c.target, c.unit);
  }

  function verdict(pass) { return pass === true ? "pass" : pass === false ? "fail" : "na"; }

  async function api(path, options) {
    const r = await fetch(path, Object.assign({}, options, {
      headers: Object.assign({ Authorization: "Bearer " + token }, (options || {}).headers || {}),
    }));
    if (r.status === 401) { logout("The admin token was refused."); throw new Error("unauthorized"); }
    if (!r.ok) throw new Error(path + ": " + r.status);
    return r.json();
  }

  function hours() { return Number(document.getElementById("hours").value) || 24; }

  function setStatus(text) { document.getElementById("status").textContent = text; }

  function renderCriteria(criteria) {
    const box = document.getElementById("criteria");
    box.replaceChildren(...criteria.map((c) => {
      const v = verdict(c.pass);
      let extra = null;
      if (c.key === "cost_savings" && c.customers) extra = c.validated + " of " + c.customers + " customers";
      if (c.key === "satisfaction") extra = c.answers + (c.answers === 1 ? " answer" : " answers") + (c.nps !== null ? ", NPS " + c.nps : "");
      if (c.key === "uptime") extra = c.probes + " probes, " + c.failed + " failed";
      if (c.key === "throughput" && c.peak_records_per_s) extra = "peak " + c.peak_records_per_s.toFixed(1) + " rec/s";
      if (c.key === "p95_latency_ms" && c.p99_ms !== null) extra = "P99 " + fmt(c.p99_ms, "ms");
      return el("div", { class: "card " + v, "data-key": c.key },
        el("div", { class: "label" }, c.label, el("span", { class: "badge " + v }, v === "na" ? "n/a" : v.toUpperCase())),
        el("div", { class: "value" }, fmt(c.value, c.unit)),
        el("div", { class: "target" }, targetText(c)),
        extra ? el("div", { class: "label" }, extra) : null);
    }));
  }

  function savingsText(s) {
    if (s.percent === null) return "no data";
    if (!s.validated) return "none yet";
    return s.percent.toFixed(1) + " %";
  }

  function savingsTitle(s) {
    return s.attributed_installs + " attributed installs this month (projected " + s.projected_installs +
      ") x $" + s.price_per_conversion + " at " + s.provider + " = " + fmt(s.provider_cost, "usd") +
      " a month, against the " + fmt(s.plan_price, "usd") + " plan";
  }

  function renderCustomers(rows) {
    const body = document.querySelector("#customers tbody");
    body.replaceChildren(...rows.map((r) => el("tr", { "data-customer": r.id },
      el("td", {}, r.company),
      el("td", { class: "status " + r.status }, r.status),
      el("td", {}, r.vertical),
      el("td", {}, r.provider),
      el("td", {}, r.integration + " · " + r.platforms.join("+")),
      el("td", { class: "num" }, fmt(r.onboarding_seconds, "seconds")),
      el("td", { class: "num" }, fmt(r.records_per_day, "records/day")),
      el("td", { class: "num" }, fmt(r.p95_ms, "ms")),
      el("td", { class: "num" }, fmt(r.p99_ms, "ms")),
      el("td", { class: "num" }, fmt(r.error_rate, "ratio")),
      el("td", { class: "num" }, r.agreement ? fmt(r.agreement.share, "ratio") : "no upload"),
      el("td", { class: "num", title: savingsTitle(r.cost_savings) }, savingsText(r.cost_savings)),
      el("td", { class: "num" }, fmt(r.plan_price, "usd")),
      el("td", { class: "num" }, r.satisfaction.answers ? fmt(r.satisfaction.satisfaction, "ratio") : "no answers"),
      el("td", { class: "num" }, r.feedback))));
  }

  function feedItem(f) {
    return el("li", { "data-feedback": f.id },
      el("div", { class: "meta" }, f.company + " · " + f.category + " · ",
        el("span", { class: "sev-" + f.severity }, f.severity),
        " · " + new Date(f.created_at).toLocaleString() + " · ticket " + f.delivery.status),
      el("div", {}, f.text));
  }

  function renderFeedback(items, outbox, configured) {
    document.getElementById("feedback").replaceChildren(...items.map(feedItem));
    document.getElementById("outbox").textContent = (configured ? "Ticketing webhook: " :
      "No ticketing webhook configured (UNMO_TRACKER_WEBHOOK_URL): feedback waits in the outbox. ") +
      outbox.delivered + " delivered, " + outbox.pending + " pending" +
      (outbox.oldest_pending ? " (oldest since " + new Date(outbox.oldest_pending).toLocaleString() + ")" : "");
  }

  function renderSurveys(list, customers) {
    const names = Object.fromEntries(customers.map((c) => [c.id, c.company]));
    const items = list.slice(-10).reverse().map((s) => {
      const li = el("li", {},
        el("div", { class: "meta" }, (names[s.customer_id] || "customer " + s.customer_id) + " · " +
          (s.automatic ? "after go-live" : "by hand") + " · " + new Date(s.created_at).toLocaleString()));
      if (s.answered_at) {
        li.append(el("div", {}, "CSAT " + s.csat + "/5" + (s.nps !== null ? ", NPS " + s.nps + "/10" : "") +
          (s.comment ? ": " + s.comment : "")));
      } else {
        const out = el("div", { class: "meta" });
        li.append(el("button", { type: "button", onclick: async () => {
          const r = await api("/v1/surveys/" + s.id + "/link", { method: "POST" });
          out.textContent = r.link;
        } }, s.link_issued_at ? "Issue a new link" : "Issue link"), out);
      }
      return li;
    });
    document.getElementById("surveys").replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, "none yet")]));
  }

  function renderServers(uptime, urls) {
    const byUrl = Object.fromEntries(uptime.servers.map((s) => [s.url, s]));
    document.getElementById("servers").replaceChildren(...urls.map((u) => {
      const s = byUrl[u];
      return el("li", {}, u + ": " + (s ? fmt(s.uptime, "ratio") + " of " + s.probes + " probes" : "no probes yet"));
    }));
  }

  function chart(id, opts, data) {
    const box = document.getElementById(id);
    const width = Math.max(300, box.clientWidth);
    if (charts[id] && charts[id].series.length === opts.series.length) {
      charts[id].setData(data);
      return;
    }
    if (charts[id]) charts[id].destroy();
    charts[id] = new uPlot(Object.assign({ width: width, height: 240 }, opts), data, box);
  }

  function renderCharts(series, customers) {
    const ids = Object.keys(series.volume);
    const names = Object.fromEntries(customers.map((c) => [String(c.id), c.company]));
    chart("chart-volume", {
      series: [{}].concat(ids.map((id, i) => ({ label: names[id] || id, stroke: COLORS[i % COLORS.length], width: 2,
        points: { show: false } }))),
      axes: [{}, { size: 60 }],
    }, [series.t].concat(ids.map((id) => series.volume[id])));
    chart("chart-latency", {
      series: [{}, { label: "P95", stroke: "#2f6fdf", width: 2, spanGaps: true, points: { show: true, size: 5 } },
        { label: "P99", stroke: "#e8772e", width: 1, spanGaps: true, points: { show: true, size: 4 } },
        { label: "target", stroke: "#c0262d", dash: [6, 4], width: 1 }],
      axes: [{}, { size: 50 }],
      scales: { y: { range: (u, min, max) => [0, Math.max(120, 1.1 * (max || 0))] } },
    }, [series.t, series.p95_ms, series.p99_ms, series.t.map(() => 100)]);
  }

  async function refresh() {
    try {
      const d = await api("/v1/dashboard?hours=" + hours());
      renderCriteria(d.criteria);
      renderCustomers(d.customers);
      renderCharts(d.series, d.customers);
      renderFeedback(d.feedback, d.outbox, d.webhook_configured);
      renderSurveys(d.surveys, d.customers);
      renderServers(d.uptime, d.ingest_urls);
      const judged = d.criteria.filter((c) => c.pass !== null);
      setStatus(judged.filter((c) => c.pass).length + " of " + judged.length + " criteria pass · week " +
        d.windows.week + " · updated " + new Date().toLocaleTimeString());
      document.body.dataset.loaded = "true";
    } catch (err) {
      if (err.message !== "unauthorized") setStatus("cannot load figures (" + err.message + "), retrying…");
    }
  }

  async function followFeed() {
    // Server-sent events over fetch; reconnects after a pause when the stream ends or fails.
    const state = document.getElementById("feed-state");
    let after = 0;
    while (token) {
      feedAbort = new AbortController();
      try {
        const r = await fetch("/v1/feedback/stream" + (after ? "?after=" + after : ""), {
          headers: { Authorization: "Bearer " + token, Accept: "text/event-stream" }, signal: feedAbort.signal,
        });
        if (!r.ok || !r.body) throw new Error("feed " + r.status);
        state.textContent = "· live";
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            const fields = {};
            for (const line of block.split("\n")) {
              const i = line.indexOf(":");
              if (i > 0) fields[line.slice(0, i)] = (fields[line.slice(0, i)] || "") + line.slice(i + 1).trimStart();
            }
            if (fields.event === "feedback" && fields.data) {
              const item = JSON.parse(fields.data);
              after = Math.max(after, item.id);
              const list = document.getElementById("feedback");
              if (!list.querySelector('[data-feedback="' + item.id + '"]')) list.prepend(feedItem(item));
            }
          }
        }
      } catch (err) {
        if (err.name === "AbortError") return;
      }
      state.textContent = "· reconnecting";
      await new Promise((resolve) => setTimeout(resolve, 3000));
    }
  }

  function start() {
    document.getElementById("login").hidden = true;
    document.getElementById("main").hidden = false;
    document.getElementById("logout").hidden = false;
    refresh();
    timer = setInterval(refresh, REFRESH_MS);
    followFeed();
  }

  function logout(message) {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    if (timer) clearInterval(timer);
    if (feedAbort) feedAbort.abort();
    document.getElementById("main").hidden = true;
    document.getElementById("logout").hidden = true;
    document.getElementById("login").hidden = false;
    setStatus(message || "signed out");
  }

  document.getElementById("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = document.getElementById("token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    start();
  });
  document.getElementById("logout").addEventListener("click", () => logout());
  document.getElementById("hours").addEventListener("change", () => { if (token) refresh(); });

  // A link like /#token=... signs in without typing (the fragment never reaches a server or a log).
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    sessionStorage.setItem(TOKEN_KEY, fromHash);
    history.replaceState(null, "", location.pathname);
  }
  token = sessionStorage.getItem(TOKEN_KEY);
  if (token) start(); else { setStatus("sign in"); document.getElementById("login").hidden = false; }
})();
