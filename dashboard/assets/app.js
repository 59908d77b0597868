// Shopstream dashboard: fetch every panel's JSON from /api and update the
// charts in place every few seconds. Money arrives as decimal strings.
"use strict";

const COLORS = ["#4f46e5", "#0d9488", "#d97706", "#e11d48", "#0284c7", "#7c3aed", "#65a30d", "#db2777", "#475569", "#ea580c"];
const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
const integer = new Intl.NumberFormat("en-US");
const percent = new Intl.NumberFormat("en-US", { style: "percent", maximumFractionDigits: 1 });
let refreshSeconds = 5;
let topBy = "revenue";
let timer = null;
const charts = {};

// A request the server never answers (a dead network path) must not freeze
// the page: give up, show why, and let the next refresh try again.
const REQUEST_TIMEOUT_MS = 15000;

async function getJSON(path) {
  const abort = new AbortController();
  const timeout = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
  let response;
  try {
    response = await fetch(path, { cache: "no-store", signal: abort.signal });
  } catch (e) {
    throw new Error(e.name === "AbortError" ? `${path}: no answer within ${REQUEST_TIMEOUT_MS / 1000} s` : `${path}: ${e.message}`);
  } finally {
    clearTimeout(timeout);
  }
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    throw new Error((body && body.error) || `${path}: HTTP ${response.status}`);
  }
  return body;
}

function chart(id, type, options = {}) {
  if (charts[id]) return charts[id];
  charts[id] = new Chart(document.getElementById(id), {
    type,
    data: { labels: [], datasets: [] },
    options: Object.assign({
      responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { legend: { display: false } },
      scales: type === "doughnut" ? {} : { x: { grid: { display: false } }, y: { beginAtZero: true } },
    }, options),
  });
  return charts[id];
}

function update(id, labels, datasets) {
  const c = charts[id];
  c.data.labels = labels;
  c.data.datasets = datasets;
  c.update("none");
}

function hhmm(ts) {
  return new Date(ts).toISOString().slice(11, 16);
}

function setKpi(name, raw, shown, change, total) {
  const card = document.querySelector(`.kpi[data-kpi="${name}"]`);
  const value = card.querySelector(".value");
  value.textContent = shown;
  value.dataset.value = String(raw);
  const c = card.querySelector(".change");
  c.className = "change";
  if (change === null || change === undefined) {
    c.textContent = "no previous hour to compare";
  } else {
    c.classList.add(change >= 0 ? "up" : "down");
    c.textContent = `${change >= 0 ? "▲" : "▼"} ${Math.abs(change).toFixed(1)}% vs previous hour`;
  }
  card.querySelector(".total").textContent = `all time: ${total}`;
}

function renderSummary(s) {
  const cur = s.current, all = s.all_time, ch = s.change_pct;
  setKpi("revenue", cur.revenue, money.format(cur.revenue), ch.revenue, money.format(all.revenue));
  setKpi("orders", cur.orders, integer.format(cur.orders), ch.orders, integer.format(all.orders));
  setKpi("average_order_value", cur.average_order_value, money.format(cur.average_order_value),
    ch.average_order_value, money.format(all.average_order_value));
  setKpi("units", cur.units, integer.format(cur.units), ch.units, integer.format(all.units));
  setKpi("discounts", cur.discounts, money.format(cur.discounts), ch.discounts, money.format(all.discounts));
}

function renderSeries(id, points, label) {
  // Lines get a light area fill; bars need the solid colour to read at all.
  const fill = charts[id].config.type === "line" ? "rgba(79, 70, 229, .15)" : COLORS[0];
  update(id, points.map(p => label(p.bucket)), [{
    label: "Revenue", data: points.map(p => Number(p.revenue)),
    borderColor: COLORS[0], backgroundColor: fill, fill: true, tension: .25, pointRadius: 0,
  }]);
}

function renderFunnel(f) {
  update("chart-funnel", ["Page views", "Cart adds", "Purchases"], [{
    data: [f.page_views, f.cart_adds, f.purchases], backgroundColor: [COLORS[0], COLORS[1], COLORS[2]],
  }]);
  const rate = r => r === null ? "–" : percent.format(r);
  document.getElementById("funnel-rates").innerHTML =
    `<span>view → cart <b>${rate(f.view_to_cart)}</b></span><span>cart → purchase <b>${rate(f.cart_to_purchase)}</b></span>` +
    `<span>view → purchase <b>${rate(f.view_to_purchase)}</b></span>` +
    `<span>cart abandonment <b>${rate(f.cart_abandonment)}</b> of ${f.carting_sessions.toLocaleString()} carts</span>`;
}

function renderCustomers(c) {
  update("chart-customers", ["New customers", "Returning customers"], [{
    data: [c.new.orders, c.returning.orders], backgroundColor: [COLORS[1], COLORS[0]],
  }]);
  charts["chart-customers"].options.plugins.legend.display = true;
  const countries = [...new Set(c.by_country_segment.map(r => r.country))];
  const segments = [...new Set(c.by_country_segment.map(r => r.segment))];
  update("chart-geo", countries, segments.map((seg, i) => ({
    label: seg, backgroundColor: COLORS[i % COLORS.length],
    data: countries.map(country => {
      const row = c.by_country_segment.find(r => r.country === country && r.segment === seg);
      return row ? Number(row.revenue) : 0;
    }),
  })));
}

function renderProducts(rows) {
  const tbody = document.getElementById("products");
  tbody.innerHTML = "";
  for (const p of rows) {
    const tr = document.createElement("tr");
    const cells = [p.name, p.category, money.format(p.revenue), integer.format(p.units), integer.format(p.views),
      p.view_to_purchase === null ? "–" : percent.format(p.view_to_purchase)];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i >= 2) td.className = "num";
      tr.appendChild(td);
    });
    tr.title = `${p.product_id} · ${p.brand}`;
    tbody.appendChild(tr);
  }
}

function humanAge(seconds) {
  if (seconds < 120) return `${seconds} s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

// Nothing loaded for this long usually means the pipeline is stopped or stuck.
const STALE_SECONDS = 60;

function renderFreshness(f) {
  const age = ts => ts ? Math.max(0, Math.round((Date.parse(f.now) - Date.parse(ts)) / 1000)) : null;
  const show = (id, seconds) => {
    const el = document.getElementById(id);
    el.textContent = seconds === null ? "never" : humanAge(seconds);
    const stale = seconds === null || seconds > STALE_SECONDS;
    el.classList.toggle("stale", stale);
    el.title = stale ? "nothing new for over a minute: is the pipeline running?" : "";
  };
  show("fresh-last", age(f.last_event_at));
  show("fresh-loaded", age(f.last_loaded_at));
  document.getElementById("fresh-delay").textContent =
    f.delay_seconds === null ? "–" : `${f.delay_seconds.toFixed(2)} s`;
  document.getElementById("fresh-dead").textContent = integer.format(f.dead_letters_last_hour);
}

function setLive(ok, text) {
  document.getElementById("live-dot").className = "dot " + (ok ? "live" : "down");
  document.getElementById("live-text").textContent = text;
}

function showBanner(message) {
  const b = document.getElementById("banner");
  b.textContent = message;
  b.hidden = false;
}

// Each refresh gets a number; an older one that finishes late (e.g. after the
// user switched revenue/units) must not overwrite a newer one's figures.
let refreshes = 0;
// One colour per order status on every panel: amber waits, teal is done, red is lost.
const STATUS_COLORS = { pending: COLORS[2], completed: COLORS[1], refunded: COLORS[5], canceled: COLORS[3] };

// Retention as a heat map: darker cells keep more of their cohort.
function renderCohorts(cohorts) {
  const months = Math.max(0, ...cohorts.map(c => c.retained.length));
  const head = document.createElement("tr");
  for (const text of ["Cohort", "Customers", ...Array.from({ length: months }, (_, i) => `+${i + 1} mo`)]) {
    const th = document.createElement("th");
    th.textContent = text;
    head.appendChild(th);
  }
  document.getElementById("cohorts-head").replaceChildren(head);
  document.getElementById("cohorts").replaceChildren(...cohorts.map(c => {
    const tr = document.createElement("tr");
    const cells = [c.cohort.slice(0, 7), c.customers.toLocaleString()];
    cells.forEach(text => { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); });
    for (let i = 0; i < months; i++) {
      const td = document.createElement("td");
      if (i < c.retention.length) {
        const share = c.retention[i];
        td.textContent = percent.format(share);
        td.title = `${c.retained[i].toLocaleString()} customers`;
        td.style.background = `rgba(79, 70, 229, ${Math.min(0.85, 0.08 + share * 1.5)})`;
        if (share > 0.4) td.style.color = "#fff";
      }
      tr.appendChild(td);
    }
    return tr;
  }));
}

function renderStatuses(o) {
  update("chart-status", ["Pending", "Completed", "Refunded", "Canceled"], [{
    data: [o.pending, o.completed - o.refunded, o.refunded, o.canceled],
    backgroundColor: [STATUS_COLORS.pending, STATUS_COLORS.completed, STATUS_COLORS.refunded, STATUS_COLORS.canceled],
  }]);
  const rate = r => r === null ? "–" : percent.format(r);
  document.getElementById("status-rates").innerHTML =
    `<span>canceled <b>${rate(o.cancel_rate)}</b> of orders</span><span>refunded <b>${rate(o.refund_rate)}</b> of completed</span>`;
  update("chart-revenue-status", ["Booked", "Completed", "Canceled", "Refunded", "Net realised"], [{
    label: "revenue",
    data: [o.booked_revenue, o.completed_revenue, o.canceled_revenue, o.refunded_revenue, o.net_realised_revenue].map(Number),
    backgroundColor: [COLORS[0], STATUS_COLORS.completed, STATUS_COLORS.canceled, STATUS_COLORS.refunded, COLORS[6]],
  }]);
  const tbody = document.getElementById("reasons");
  tbody.replaceChildren(...o.reasons.map(r => {
    const tr = document.createElement("tr");
    for (const [text, num] of [[r.status, false], [r.reason.replaceAll("_", " "), false],
                               [r.orders.toLocaleString(), true], [money.format(Number(r.amount)), true]]) {
      const td = document.createElement("td");
      td.textContent = text;
      if (num) td.className = "num";
      tr.appendChild(td);
    }
    return tr;
  }));
}

function renderCategories(cats) {
  const field = topBy === "units" ? "units" : "revenue";
  const rows = [...cats].sort((a, b) => Number(b[field]) - Number(a[field]));
  document.getElementById("categories-by").textContent = `by ${field}`;
  update("chart-categories", rows.map(c => c.category), [{
    label: field, data: rows.map(c => Number(c[field])), backgroundColor: rows.map((_, i) => COLORS[i % COLORS.length]),
  }]);
}

async function refresh() {
  const mine = ++refreshes;
  try {
    const [summary, minute, hour, top, cats, funnel, customers, hours, fresh, statuses, cohorts] = await Promise.all([
      getJSON("/api/summary?window=60"), getJSON("/api/sales/minute?minutes=60"), getJSON("/api/sales/hour?hours=48"),
      getJSON(`/api/products/top?by=${topBy}&limit=10`), getJSON("/api/categories"), getJSON("/api/funnel"),
      getJSON("/api/customers"), getJSON("/api/activity/hours"), getJSON("/api/freshness"),
      getJSON("/api/orders/status"), getJSON("/api/cohorts?months=12"),
    ]);
    if (mine !== refreshes) return;
    renderSummary(summary);
    renderSeries("chart-minute", minute, hhmm);
    renderSeries("chart-hour", hour, ts => new Date(ts).toISOString().slice(5, 13).replace("T", " ") + "h");
    renderProducts(top);
    renderCategories(cats);
    renderFunnel(funnel);
    renderCustomers(customers);
    update("chart-hours", hours.map(h => String(h.hour).padStart(2, "0")), [
      { label: "Page views", data: hours.map(h => h.page_views), backgroundColor: COLORS[0], yAxisID: "y" },
      { label: "Orders", data: hours.map(h => h.orders), backgroundColor: COLORS[2], yAxisID: "orders" },
    ]);
    renderStatuses(statuses);
    renderCohorts(cohorts);
    renderFreshness(fresh);
    document.getElementById("banner").hidden = true;
    setLive(true, `live · updated ${new Date().toLocaleTimeString()}`);
    document.body.dataset.ready = "true";
  } catch (e) {
    if (mine !== refreshes) return;
    showBanner(e.message);
    setLive(false, "not updating");
    console.error(e);
  } finally {
    clearTimeout(timer);
    timer = setTimeout(refresh, refreshSeconds * 1000);
  }
}

async function start() {
  chart("chart-minute", "line");
  chart("chart-hour", "bar");
  chart("chart-funnel", "bar");
  chart("chart-customers", "doughnut", { plugins: { legend: { display: true, position: "bottom" } } });
  chart("chart-status", "doughnut", { plugins: { legend: { display: true, position: "bottom" } } });
  chart("chart-revenue-status", "bar", { scales: { y: { beginAtZero: true } } });
  chart("chart-categories", "bar", { indexAxis: "y", scales: { x: { beginAtZero: true } } });
  chart("chart-geo", "bar", {
    plugins: { legend: { display: true, position: "bottom" } },
    scales: { x: { stacked: true, grid: { display: false } }, y: { stacked: true, beginAtZero: true } },
  });
  chart("chart-hours", "bar", {
    plugins: { legend: { display: true, position: "bottom" } },
    scales: {
      x: { grid: { display: false } },
      y: { beginAtZero: true, title: { display: true, text: "page views" } },
      orders: { beginAtZero: true, position: "right", grid: { display: false }, title: { display: true, text: "orders" } },
    },
  });
  document.querySelectorAll(".toggle button").forEach(b => b.addEventListener("click", () => {
    topBy = b.dataset.by;
    document.querySelectorAll(".toggle button").forEach(x => x.classList.toggle("on", x === b));
    refresh();
  }));
  try {
    const config = await getJSON("/api/config");
    refreshSeconds = config.refresh_seconds;
    document.getElementById("schema").textContent = `schema ${config.schema}`;
  } catch (e) {
    showBanner(e.message);
  }
  refresh();
}

document.addEventListener("DOMContentLoaded", start);
