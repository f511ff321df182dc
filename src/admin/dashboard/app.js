// Loom dashboard: polls /dashboard/state and draws it. Plain JavaScript, no dependencies, SVG charts.
"use strict";

const POLL_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const H = 160;
const PAD = { left: 44, right: 8, top: 8, bottom: 20 };

const $ = (id) => document.getElementById(id);

function text(id, value, raw) {
  const el = $(id);
  el.textContent = value;
  if (raw !== undefined) el.dataset.value = String(raw);
}

/** 1234567 → "1234567"; the exact count stays readable and comparable. */
function count(n) {
  return String(Math.round(n));
}

function rate(n) {
  return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2);
}

function ms(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  const v = seconds * 1000;
  return (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) + " ms";
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return n.toFixed(i === 0 ? 0 : 1) + " " + units[i];
}

function clock(t) {
  const d = new Date(t);
  return d.toTimeString().slice(0, 8);
}

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (parent) parent.appendChild(e);
  return e;
}

/** A "nice" upper bound for an axis: 1, 2, 5 × 10^n at or above `max`. */
function niceMax(max) {
  if (!(max > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(max)));
  for (const m of [1, 2, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

/**
 * A line chart of `lines` ([{cls, values}]) over the sample times `ts`, drawn into the element `id`
 * (replacing what was there). `fmt` labels the y axis.
 */
function chart(id, ts, lines, fmt) {
  const box = $(id);
  // Drawn at the box's own width (redrawn each poll), so text is never stretched.
  const W = Math.max(200, Math.round(box.clientWidth) || 600);
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  const values = lines.flatMap((l) => l.values.filter((v) => v !== null && Number.isFinite(v)));
  if (ts.length < 2 || values.length === 0) {
    const t = el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, svg);
    t.textContent = "collecting samples…";
    box.replaceChildren(svg);
    return;
  }
  const top = niceMax(Math.max(...values));
  const t0 = ts[0];
  const t1 = ts[ts.length - 1];
  const x = (t) => PAD.left + ((t - t0) / Math.max(1, t1 - t0)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / top) * (H - PAD.top - PAD.bottom);
  for (const f of [0, 0.5, 1]) {
    el("line", { x1: PAD.left, x2: W - PAD.right, y1: y(top * f), y2: y(top * f), class: "grid" }, svg);
    const label = el(
      "text",
      { x: PAD.left - 4, y: y(top * f) + 3, "text-anchor": "end", class: "axis" },
      svg,
    );
    label.textContent = fmt(top * f);
  }
  const first = el("text", { x: PAD.left, y: H - 4, class: "axis" }, svg);
  first.textContent = clock(t0);
  const last = el("text", { x: W - PAD.right, y: H - 4, "text-anchor": "end", class: "axis" }, svg);
  last.textContent = clock(t1);
  for (const l of lines) {
    // A gap (no request in an interval) splits the line.
    let points = [];
    const flush = () => {
      if (points.length > 0) el("polyline", { points: points.join(" "), class: l.cls }, svg);
      points = [];
    };
    l.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) flush();
      else points.push(`${x(ts[i]).toFixed(1)},${y(v).toFixed(1)}`);
    });
    flush();
  }
  box.replaceChildren(svg);
}

/** Fills the tbody of table `id` with rows of cells ([text, className?]). */
function rows(id, list, cells, empty) {
  const body = $(id).tBodies[0];
  const out = list.map((item) => {
    const tr = document.createElement("tr");
    for (const [value, cls] of cells(item)) {
      const td = document.createElement("td");
      td.textContent = value;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    return tr;
  });
  if (out.length === 0) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = $(id).tHead.rows[0].cells.length;
    td.className = "muted";
    td.textContent = empty;
    tr.appendChild(td);
    out.push(tr);
  }
  body.replaceChildren(...out);
}

function render(s) {
  text("version", `v${s.info.version} · ${s.info.workers} worker${s.info.workers === 1 ? "" : "s"}`);
  text("total-requests", count(s.totals.requests), s.totals.requests);
  text("total-errors", count(s.totals.errors), s.totals.errors);
  text("active-connections", count(s.totals.active_connections), s.totals.active_connections);
  const last = s.series[s.series.length - 1];
  text("rps", last ? rate(last.rps) : "–", last ? last.rps : "");
  text("error-rate", last ? (last.error_rate * 100).toFixed(2) + " %" : "–", last ? last.error_rate : "");
  text("p99", last ? ms(last.p99) : "–");
  text("rss", bytes(s.process.resident_bytes), s.process.resident_bytes);
  text("loop", ms(s.process.event_loop_p99_seconds));

  const ts = s.series.map((p) => p.t);
  chart("chart-rps", ts, [{ cls: "s0", values: s.series.map((p) => p.rps) }], rate);
  chart(
    "chart-errors",
    ts,
    [{ cls: "err", values: s.series.map((p) => p.error_rate * 100) }],
    (v) => v.toFixed(v >= 10 ? 0 : 1),
  );
  chart(
    "chart-latency",
    ts,
    ["p50", "p95", "p99"].map((k) => ({
      cls: k,
      values: s.series.map((p) => (p[k] === null ? null : p[k] * 1000)),
    })),
    (v) => v.toFixed(v >= 10 ? 0 : 1),
  );

  rows("routes", s.routes, (r) => [
    [r.id],
    [(r.host ? r.host : "") + r.path],
    [r.upstream ?? (r.redirect ? "redirect" : "–")],
    [count(r.requests), "n"],
    [count(r.errors), r.errors > 0 ? "n bad" : "n"],
  ], "no routes");
  const endpoints = s.upstreams.flatMap((u) =>
    u.endpoints.map((e, i) => ({ upstream: i === 0 ? `${u.name} (${u.load_balancer})` : "", e }))
  );
  rows("upstreams", endpoints, ({ upstream, e }) => [
    [upstream],
    [e.address],
    e.draining
      ? ["draining", "warn"]
      : e.ejected
      ? ["ejected", "bad"]
      : e.healthy
      ? ["healthy", "ok"]
      : ["unhealthy", "bad"],
    [e.circuit ?? "closed", e.circuit === "open" ? "bad" : e.circuit === "half_open" ? "warn" : ""],
    [count(e.in_flight), "n"],
  ], "no upstreams");
  rows("plugins", s.plugins, (p) => [
    [p.name],
    [p.phase],
    p.running ? ["running", "ok"] : ["stopped", "bad"],
    [count(p.vms), "n"],
    [count(p.errors), p.errors > 0 ? "n bad" : "n"],
    [p.last_error ?? "", "wrap"],
  ], "no plugins");
  rows("errors", s.errors, (e) => [
    [clock(e.time)],
    [e.status === 0 ? "no answer" : String(e.status), "bad"],
    [e.route || "–"],
    [`${e.method} ${e.path}`],
    [e.upstream || "–"],
    [e.error || "", "wrap"],
    [e.request_id],
  ], "no failed request");
  rows("reloads", s.reloads, (r) => [
    [new Date(r.time).toLocaleString()],
    [r.trigger],
    r.ok ? ["applied", "ok"] : [r.errors.join("; "), "bad wrap"],
  ], "no reload yet");
}

async function poll() {
  const status = $("status");
  try {
    const res = await fetch("/dashboard/state", { cache: "no-store" });
    if (!res.ok) throw new Error("HTTP " + res.status);
    render(await res.json());
    status.textContent = "live";
    status.className = "badge live";
    document.body.dataset.updated = String(Date.now());
  } catch (e) {
    status.textContent = "offline: " + e.message;
    status.className = "badge down";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
