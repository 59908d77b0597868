// Shopstream dashboard: four pages over one set of global filters. The page
// and the filters live in the URL (shareable; the back button walks through
// them); every few seconds the visible page's panels are fetched from /api
// with those filters and the charts updated in place. Money arrives as
// decimal strings.
"use strict";

const COLORS = ["#4f46e5", "#0d9488", "#d97706", "#e11d48", "#0284c7", "#7c3aed", "#65a30d", "#db2777", "#475569", "#ea580c"];
const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
const integer = new Intl.NumberFormat("en-US");
const percent = new Intl.NumberFormat("en-US", { style: "percent", maximumFractionDigits: 1 });
const FILTERS = ["range", "country", "segment", "category", "device"];
const PAGES = ["overview", "time", "orders", "customers"];
const RANGE_NAMES = { "15m": "15 min", "1h": "hour", "6h": "6 hours", "24h": "24 hours", "7d": "7 days", "30d": "30 days", all: "all time" };
// ISO 3166 alpha-2 (the warehouse's) to the numeric ids of the world-atlas map.
const ISO_NUMERIC = {
  US: "840", GB: "826", DE: "276", FR: "250", CA: "124", IT: "380", BR: "076", AU: "036", JP: "392", PT: "620",
  ES: "724", NL: "528", MX: "484", IN: "356", CN: "156", SE: "752", NO: "578", PL: "616", BE: "056", CH: "756",
};
const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
// One colour per order status on every panel: amber waits, teal is done, red is lost.
const STATUS_COLORS = { pending: COLORS[2], completed: COLORS[1], refunded: COLORS[5], canceled: COLORS[3] };
// Nothing loaded for this long usually means the pipeline is stopped or stuck.
const STALE_SECONDS = 60;
// A request the server never answers (a dead network path) must not freeze
// the page: give up, show why, and let the next refresh try again.
const REQUEST_TIMEOUT_MS = 15000;

let refreshSeconds = 5;
let topBy = "revenue";
let timer = null;
let world = null;
const charts = {};
// The rows behind each exportable table, as shown.
const tables = {};

// ---- state in the URL ----------------------------------------------------

function state() {
  const q = new URLSearchParams(location.search);
  const s = { page: PAGES.includes(q.get("page")) ? q.get("page") : "overview" };
  for (const f of FILTERS) s[f] = q.get(f) || "";
  if (!s.range) s.range = "all";
  return s;
}

function filterQuery(s) {
  const q = new URLSearchParams();
  for (const f of FILTERS) if (s[f]) q.set(f, s[f]);
  return q.toString();
}

// Change the URL (a new history entry), then show and fetch what it says.
function navigate(changes) {
  const s = Object.assign(state(), changes);
  const q = new URLSearchParams(filterQuery(s));
  q.set("page", s.page);
  history.pushState(null, "", `?${q}`);
  apply();
}

function apply() {
  resetLines();
  const s = state();
  for (const el of document.querySelectorAll(".tabs a")) el.classList.toggle("on", el.dataset.page === s.page);
  for (const el of document.querySelectorAll("section.page")) el.hidden = el.dataset.page !== s.page;
  const form = document.getElementById("filters");
  for (const f of FILTERS) form.elements[f].value = s[f];
  refresh();
}

// ---- fetching ------------------------------------------------------------

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

// ---- charts --------------------------------------------------------------

function chart(id, type, options = {}) {
  if (charts[id]) return charts[id];
  charts[id] = new Chart(document.getElementById(id), {
    type,
    data: { labels: [], datasets: [] },
    options: Object.assign({
      responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { legend: { display: false } },
      datasets: { bar: { maxBarThickness: 56 } },
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

// Clicking a bar or slice of `id` sets filter `name` to its label.
function clickToFilter(id, name, value = label => label) {
  charts[id].options.onClick = (_, elements) => {
    if (!elements.length) return;
    const label = charts[id].data.labels[elements[0].index];
    navigate({ [name]: value(label, elements[0].index) });
  };
}

function bucketLabel(ts, grain) {
  const iso = new Date(ts).toISOString();
  if (grain === "minute") return iso.slice(11, 16);
  if (grain === "hour") return iso.slice(5, 13).replace("T", " ") + "h";
  return iso.slice(0, 10);
}

// ---- panels --------------------------------------------------------------

function setKpi(name, raw, shown, change, total, range) {
  const card = document.querySelector(`.kpi[data-kpi="${name}"]`);
  const value = card.querySelector(".value");
  value.textContent = shown;
  value.dataset.value = String(raw);
  const c = card.querySelector(".change");
  c.className = "change";
  if (range === "all") {
    c.textContent = "all time";
  } else if (change === null || change === undefined) {
    c.textContent = `no previous ${RANGE_NAMES[range]} to compare`;
  } else {
    c.classList.add(change >= 0 ? "up" : "down");
    c.textContent = `${change >= 0 ? "▲" : "▼"} ${Math.abs(change).toFixed(1)}% vs previous ${RANGE_NAMES[range]}`;
  }
  card.querySelector(".total").textContent = `all time: ${total}`;
}

function renderSummary(s) {
  const cur = s.current, all = s.all_time, ch = s.change_pct;
  setKpi("revenue", cur.revenue, money.format(cur.revenue), ch.revenue, money.format(all.revenue), s.range);
  setKpi("orders", cur.orders, integer.format(cur.orders), ch.orders, integer.format(all.orders), s.range);
  setKpi("average_order_value", cur.average_order_value, money.format(cur.average_order_value),
    ch.average_order_value, money.format(all.average_order_value), s.range);
  setKpi("units", cur.units, integer.format(cur.units), ch.units, integer.format(all.units), s.range);
  setKpi("discounts", cur.discounts, money.format(cur.discounts), ch.discounts, money.format(all.discounts), s.range);
}

function renderSeries(series) {
  document.getElementById("series-grain").textContent = `per ${series.grain}`;
  update("chart-series", series.points.map(p => bucketLabel(p.bucket, series.grain)), [{
    label: "Sales", data: series.points.map(p => Number(p.revenue)),
    borderColor: COLORS[0], backgroundColor: "rgba(79, 70, 229, .15)", fill: true, tension: .25,
    pointRadius: series.points.length < 3 ? 4 : 0,
  }]);
}

function renderMap(geo) {
  if (!world) return;
  const byId = {};
  for (const r of geo) {
    const id = ISO_NUMERIC[r.country];
    if (id) byId[id] = (byId[id] || 0) + Number(r.revenue);
  }
  const c = charts["chart-map"];
  c.data.labels = world.map(f => f.properties.name);
  c.data.datasets = [{ label: "Sales", outline: world, data: world.map(f => ({ feature: f, value: byId[f.id] || 0 })) }];
  c.update("none");
}

function renderGeo(rows) {
  const countries = [...new Set(rows.map(r => r.country))];
  const segments = [...new Set(rows.map(r => r.segment))];
  update("chart-geo", countries, segments.map((seg, i) => ({
    label: seg, backgroundColor: COLORS[i % COLORS.length],
    data: countries.map(country => {
      const row = rows.find(r => r.country === country && r.segment === seg);
      return row ? Number(row.revenue) : 0;
    }),
  })));
}

function renderCustomers(c) {
  const split = c.new_vs_returning;
  document.getElementById("customers-note").hidden = split !== null;
  update("chart-customers", ["New customers", "Returning customers"], split === null ? [] : [{
    data: [split.new.orders, split.returning.orders], backgroundColor: [COLORS[1], COLORS[0]],
  }]);
}

function renderCategories(cats) {
  update("chart-categories", cats.map(c => c.category), [{
    label: "sales", data: cats.map(c => Number(c.revenue)), backgroundColor: cats.map((_, i) => COLORS[i % COLORS.length]),
  }]);
}

function cellRow(cells, numericFrom) {
  const tr = document.createElement("tr");
  cells.forEach((text, i) => {
    const td = document.createElement("td");
    td.textContent = text;
    if (i >= numericFrom) td.className = "num";
    tr.appendChild(td);
  });
  return tr;
}

function renderProducts(rows) {
  update("chart-product-units", rows.map(p => p.name), [{
    label: "units", data: rows.map(p => p.units), backgroundColor: COLORS[1],
  }]);
  tables.products = {
    header: ["product_id", "name", "category", "brand", "revenue", "units", "views", "view_to_purchase"],
    rows: rows.map(p => [p.product_id, p.name, p.category, p.brand, p.revenue, p.units, p.views ?? "", p.view_to_purchase ?? ""]),
  };
  document.getElementById("products").replaceChildren(...rows.map(p => {
    const tr = cellRow([p.name, p.category, money.format(p.revenue), integer.format(p.units),
      p.views === null ? "–" : integer.format(p.views),
      p.view_to_purchase === null ? "–" : percent.format(p.view_to_purchase)], 2);
    tr.title = `${p.product_id} · ${p.brand}`;
    return tr;
  }));
  const revenue = rows.reduce((a, p) => a + Number(p.revenue), 0);
  const units = rows.reduce((a, p) => a + p.units, 0);
  // Views are all time and unfiltered (or by category only): "–" otherwise.
  const views = rows.some(p => p.views === null) ? "–" : integer.format(rows.reduce((a, p) => a + p.views, 0));
  document.getElementById("products-total").replaceChildren(
    cellRow([`Total (${rows.length} products)`, "", money.format(revenue), integer.format(units), views, ""], 2));
}

function renderFunnel(f) {
  update("chart-funnel", ["Page views", "Cart adds", "Purchases"], [{
    data: [f.page_views, f.cart_adds, f.purchases], backgroundColor: [COLORS[0], COLORS[1], COLORS[2]],
  }]);
  const rate = r => r === null ? "–" : percent.format(r);
  const carts = f.carting_sessions === null ? "<span>cart abandonment: all time, unfiltered only</span>"
    : `<span>cart abandonment <b>${rate(f.cart_abandonment)}</b> of ${integer.format(f.carting_sessions)} carts</span>`;
  document.getElementById("funnel-rates").innerHTML =
    `<span>view → cart <b>${rate(f.view_to_cart)}</b></span><span>cart → purchase <b>${rate(f.cart_to_purchase)}</b></span>` +
    `<span>view → purchase <b>${rate(f.view_to_purchase)}</b></span>` + carts;
}

function renderStatuses(o) {
  update("chart-status", ["Pending", "Completed", "Refunded", "Canceled"], [{
    data: [o.pending, o.completed - o.refunded, o.refunded, o.canceled],
    backgroundColor: [STATUS_COLORS.pending, STATUS_COLORS.completed, STATUS_COLORS.refunded, STATUS_COLORS.canceled],
  }]);
  const rate = r => r === null ? "–" : percent.format(r);
  document.getElementById("status-rates").innerHTML =
    `<span>canceled <b>${rate(o.cancel_rate)}</b> of orders</span><span>refunded <b>${rate(o.refund_rate)}</b> of completed</span>`;
}

function renderRevenueByStatus(o) {
  update("chart-revenue-status", ["Booked", "Completed", "Canceled", "Refunded", "Net realised"], [{
    label: "revenue",
    data: [o.booked_revenue, o.completed_revenue, o.canceled_revenue, o.refunded_revenue, o.net_realised_revenue].map(Number),
    backgroundColor: [COLORS[0], STATUS_COLORS.completed, STATUS_COLORS.canceled, STATUS_COLORS.refunded, COLORS[6]],
  }]);
  tables.reasons = { header: ["status", "reason", "orders", "amount"], rows: o.reasons.map(r => [r.status, r.reason, r.orders, r.amount]) };
  document.getElementById("reasons").replaceChildren(...o.reasons.map(r =>
    cellRow([r.status, r.reason.replaceAll("_", " "), integer.format(r.orders), money.format(Number(r.amount))], 2)));
}

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
  tables.cohorts = {
    header: ["cohort", "customers", ...Array.from({ length: months }, (_, i) => `retained_${i + 1}`)],
    rows: cohorts.map(c => [c.cohort, c.customers, ...c.retained]),
  };
  document.getElementById("cohorts").replaceChildren(...cohorts.map(c => {
    const tr = cellRow([c.cohort.slice(0, 7), integer.format(c.customers)], 9);
    for (let i = 0; i < months; i++) {
      const td = document.createElement("td");
      if (i < c.retention.length) {
        const share = c.retention[i];
        td.textContent = percent.format(share);
        td.title = `${integer.format(c.retained[i])} customers`;
        td.style.background = `rgba(79, 70, 229, ${Math.min(0.85, 0.08 + share * 1.5)})`;
        if (share > 0.4) td.style.color = "#fff";
      }
      tr.appendChild(td);
    }
    return tr;
  }));
}

function renderHours(h) {
  update("chart-hours", h.hours.map(x => String(x.hour).padStart(2, "0")), [
    { label: "Units", data: h.hours.map(x => x.units), backgroundColor: COLORS[0], yAxisID: "y" },
    { label: "Orders", data: h.hours.map(x => x.orders), backgroundColor: COLORS[2], yAxisID: "orders" },
  ]);
  update("chart-ampm", ["AM", "PM"], [{ data: [h.am.orders, h.pm.orders], backgroundColor: [COLORS[4], COLORS[5]] }]);
}

function renderCalendar(c) {
  update("chart-days", c.days_of_month.map(d => d.key), [
    { type: "bar", label: "Sales", data: c.days_of_month.map(d => Number(d.revenue)), backgroundColor: COLORS[0], yAxisID: "y" },
    { type: "line", label: "Units", data: c.days_of_month.map(d => d.units), borderColor: COLORS[2], yAxisID: "units", pointRadius: 2 },
  ]);
  weekdaySales = c.weekdays.map(d => Number(d.revenue));
  renderWeekdays();
}

// Customers (bars, from the profile) and sales (line, from the calendar) by weekday.
let weekdaySales = [];
let weekdayCustomers = [];
function renderWeekdays() {
  update("chart-weekdays", WEEKDAYS, [
    { type: "bar", label: "Customers", data: weekdayCustomers, backgroundColor: COLORS[1], yAxisID: "y" },
    { type: "line", label: "Sales", data: weekdaySales, borderColor: COLORS[3], yAxisID: "sales", pointRadius: 3 },
  ]);
}

const GENDER_COLORS = { female: COLORS[7], male: COLORS[4], unspecified: COLORS[8], unknown: "#cbd5e1" };

function renderProfile(p) {
  update("chart-gender", p.by_gender.map(g => g.key), [{
    data: p.by_gender.map(g => g.customers), backgroundColor: p.by_gender.map(g => GENDER_COLORS[g.key] || COLORS[9]),
  }]);
  update("chart-ages", p.by_age_band.map(b => b.key), [{
    label: "customers", data: p.by_age_band.map(b => b.customers), backgroundColor: COLORS[5],
  }]);
  update("chart-customer-months", p.by_month.map(m => m.month.slice(0, 7)), [{
    label: "customers", data: p.by_month.map(m => m.customers), backgroundColor: COLORS[1],
  }]);
  weekdayCustomers = p.by_weekday.map(d => d.customers);
  renderWeekdays();
}

// ---- the order-line table: keyset pages, newest first ---------------------

// Cursors of the pages before the current one (for "Newer"), and of the current one.
let lineCursors = [];
let lineCursor = "";
let nextCursor = null;

function linesQuery(q) {
  const search = document.getElementById("search").value.trim();
  const p = new URLSearchParams(q);
  if (search) p.set("search", search);
  return p;
}

function renderLines(page) {
  nextCursor = page.next;
  document.getElementById("lines").replaceChildren(...page.lines.map(l => {
    const tr = cellRow([l.event_time.slice(0, 19).replace("T", " "), l.order_id.slice(0, 8), l.customer_id, l.customer_name,
      l.age ?? "–", l.country, l.payment_method.replaceAll("_", " "), l.device, l.status, l.product, l.quantity,
      money.format(Number(l.amount))], 99);
    for (const i of [4, 10, 11]) tr.children[i].className = "num";
    tr.children[1].title = l.order_id;
    tr.children[8].className = `status ${l.status}`;
    return tr;
  }));
  document.getElementById("lines-older").disabled = nextCursor === null;
  document.getElementById("lines-newer").disabled = lineCursors.length === 0;
  document.getElementById("lines-page").textContent = `page ${lineCursors.length + 1}`;
}

function resetLines() {
  lineCursors = [];
  lineCursor = "";
}

function renderPayments(p) {
  document.getElementById("payments-note").hidden = p.methods !== null;
  const rows = p.methods || [];
  update("chart-payments", rows.map(r => r.key.replaceAll("_", " ")), [{
    data: rows.map(r => Number(r.revenue)), backgroundColor: rows.map((_, i) => COLORS[i % COLORS.length]),
  }]);
}

function renderDevices(rows) {
  update("chart-devices", rows.map(r => r.key), [{
    label: "orders", data: rows.map(r => r.orders), backgroundColor: rows.map((_, i) => COLORS[i % COLORS.length]),
  }]);
}

function humanAge(seconds) {
  if (seconds < 120) return `${seconds} s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

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

// ---- refresh -------------------------------------------------------------

// What each page shows: [path, renderer]; `q` is the filter query string.
function panels(page, q) {
  const common = [[`/api/summary?${q}`, renderSummary], ["/api/freshness", renderFreshness]];
  const pages = {
    overview: [
      [`/api/sales/series?${q}`, renderSeries], [`/api/orders/status?${q}`, renderStatuses],
      [`/api/customers?${q}`, c => { renderMap(c.by_country_segment); renderCustomers(c); }],
      [`/api/categories?${q}`, renderCategories], [`/api/products/top?by=units&limit=10&${q}`, renderProducts],
      [`/api/customers/profile?${q}`, renderProfile],
    ],
    time: [
      [`/api/activity/hours?${q}`, renderHours], [`/api/calendar?${q}`, renderCalendar],
      [`/api/customers/profile?${q}`, renderProfile],
    ],
    orders: [
      [`/api/payments?${q}`, renderPayments], [`/api/devices?${q}`, renderDevices],
      [`/api/products/top?by=${topBy}&limit=20&${q}`, renderProducts], [`/api/orders/status?${q}`, renderRevenueByStatus],
    ],
    customers: [
      [`/api/orders/lines?limit=25&${linesQuery(q)}${lineCursor ? "&after=" + lineCursor : ""}`, renderLines],
      [`/api/customers?${q}`, c => { renderGeo(c.by_country_segment); renderCustomers(c); }],
      [`/api/funnel?${q}`, renderFunnel], [`/api/customers/profile?${q}`, renderProfile],
      ["/api/cohorts?months=12", renderCohorts],
    ],
  };
  return common.concat(pages[page]);
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
// user changed a filter) must not overwrite a newer one's figures.
let refreshes = 0;

async function refresh() {
  const mine = ++refreshes;
  const s = state();
  const list = panels(s.page, filterQuery(s));
  try {
    const answers = await Promise.all(list.map(([path]) => getJSON(path)));
    if (mine !== refreshes) return;
    list.forEach(([, render], i) => render(answers[i]));
    document.getElementById("banner").hidden = true;
    setLive(true, `live · updated ${new Date().toLocaleTimeString()}`);
    document.body.dataset.ready = "true";
    document.body.dataset.shown = `${s.page}?${filterQuery(s)}`;
    document.getElementById("lines-csv").href = `/api/orders/lines.csv?${linesQuery(filterQuery(s))}`;
  } catch (e) {
    if (mine !== refreshes) return;
    showBanner(e.message);
    setLive(false, "not updating");
    console.error(e);
  } finally {
    if (mine === refreshes) {
      clearTimeout(timer);
      timer = setTimeout(refresh, refreshSeconds * 1000);
    }
  }
}

// ---- CSV export ----------------------------------------------------------

function csvCell(v) {
  const s = String(v ?? "");
  return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

function exportCsv(name) {
  const t = tables[name];
  if (!t) return;
  const text = [t.header, ...t.rows].map(r => r.map(csvCell).join(",")).join("\n") + "\n";
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  const s = state();
  a.download = `shopstream-${name}-${s.range}${s.country ? "-" + s.country : ""}.csv`;
  document.body.appendChild(a);
  a.click();
  a.remove();
}

// ---- start ---------------------------------------------------------------

function fillSelect(name, values) {
  const select = document.getElementById("filters").elements[name];
  for (const v of values) {
    const o = document.createElement("option");
    o.value = v;
    o.textContent = v.replaceAll("_", " ");
    select.appendChild(o);
  }
}

function makeCharts() {
  const legend = { legend: { display: true, position: "bottom" } };
  chart("chart-series", "line");
  chart("chart-status", "doughnut", { plugins: legend });
  chart("chart-customers", "doughnut", { plugins: legend });
  chart("chart-gender", "doughnut", { plugins: legend });
  chart("chart-ages", "bar");
  chart("chart-customer-months", "bar");
  chart("chart-categories", "bar", { indexAxis: "y", scales: { x: { beginAtZero: true } } });
  clickToFilter("chart-categories", "category");
  chart("chart-product-units", "bar", { indexAxis: "y", scales: { x: { beginAtZero: true } } });
  chart("chart-map", "choropleth", {
    showOutline: true, showGraticule: false,
    plugins: { legend: { display: false } },
    scales: { projection: { axis: "x", projection: "equalEarth" }, color: { axis: "x", quantize: 6, legend: { position: "bottom-left" } } },
  });
  clickToFilter("chart-map", "country", (_, i) => {
    const id = world[i].id;
    return Object.keys(ISO_NUMERIC).find(k => ISO_NUMERIC[k] === id) || "";
  });
  chart("chart-geo", "bar", {
    plugins: legend,
    scales: { x: { stacked: true, grid: { display: false } }, y: { stacked: true, beginAtZero: true } },
  });
  chart("chart-funnel", "bar");
  chart("chart-revenue-status", "bar");
  chart("chart-hours", "bar", {
    plugins: legend,
    scales: {
      x: { grid: { display: false } },
      y: { beginAtZero: true, title: { display: true, text: "units" } },
      orders: { beginAtZero: true, position: "right", grid: { display: false }, title: { display: true, text: "orders" } },
    },
  });
  chart("chart-ampm", "doughnut", { plugins: legend });
  chart("chart-days", "bar", {
    plugins: legend,
    scales: { x: { grid: { display: false } }, y: { beginAtZero: true }, units: { beginAtZero: true, position: "right", grid: { display: false } } },
  });
  chart("chart-weekdays", "bar", {
    plugins: legend,
    scales: { x: { grid: { display: false } }, y: { beginAtZero: true }, sales: { beginAtZero: true, position: "right", grid: { display: false } } },
  });
  chart("chart-payments", "doughnut", { plugins: legend });
  chart("chart-devices", "bar");
  clickToFilter("chart-devices", "device");
}

async function start() {
  makeCharts();
  document.querySelectorAll(".tabs a").forEach(a => a.addEventListener("click", e => {
    e.preventDefault();
    navigate({ page: a.dataset.page });
  }));
  const form = document.getElementById("filters");
  form.addEventListener("change", e => navigate({ [e.target.name]: e.target.value }));
  document.getElementById("clear-filters").addEventListener("click", () =>
    navigate(Object.fromEntries(FILTERS.map(f => [f, f === "range" ? "all" : ""]))));
  document.querySelectorAll(".toggle button").forEach(b => b.addEventListener("click", () => {
    topBy = b.dataset.by;
    document.querySelectorAll(".toggle button").forEach(x => x.classList.toggle("on", x === b));
    refresh();
  }));
  document.querySelectorAll("button.export").forEach(b => b.addEventListener("click", () => exportCsv(b.dataset.table)));
  document.getElementById("search-form").addEventListener("submit", e => {
    e.preventDefault();
    resetLines();
    refresh();
  });
  document.getElementById("lines-older").addEventListener("click", () => {
    if (nextCursor === null) return;
    lineCursors.push(lineCursor);
    lineCursor = nextCursor;
    refresh();
  });
  document.getElementById("lines-newer").addEventListener("click", () => {
    if (!lineCursors.length) return;
    lineCursor = lineCursors.pop();
    refresh();
  });
  window.addEventListener("popstate", apply);
  try {
    const [config, dims, atlas] = await Promise.all([
      getJSON("/api/config"), getJSON("/api/dimensions"), getJSON("/assets/world-countries-110m.json"),
    ]);
    refreshSeconds = config.refresh_seconds;
    document.getElementById("schema").textContent = `schema ${config.schema}`;
    fillSelect("country", dims.countries);
    fillSelect("segment", dims.segments);
    fillSelect("category", dims.categories);
    fillSelect("device", dims.devices);
    world = ChartGeo.topojson.feature(atlas, atlas.objects.countries).features
      .filter(f => f.properties.name !== "Antarctica");
  } catch (e) {
    showBanner(e.message);
  }
  apply();
}

document.addEventListener("DOMContentLoaded", start);
