// kubetally dashboard. Plain JavaScript, no dependencies, nothing loaded from elsewhere.
// Every number comes from the server's /api/v1 routes (the same answers any API client gets);
// the page only formats them. Money stays exact: API amounts are parsed into integer
// micro-units (BigInt) and printed without going through floating point.
"use strict";

const T = {
  en: {
    skip: "Skip to content", overview: "Overview", tenantView: "Tenant", delivery: "Delivery",
    language: "Language", signOut: "Sign out", signInTitle: "Sign in to kubetally", token: "Access token",
    tokenHint: "A token from kubetally token create. It is exchanged for a session and not kept by the browser.",
    signIn: "Sign in", period: "Period", month: "Month", week: "Week", day: "Day", current: "Current",
    cluster: "Cluster", project: "Project", tenant: "Tenant", all: "All", loading: "Loading…",
    totalSpend: "Total spend", tenants: "Tenants", gpuHours: "GPU-hours", perTenant: "Spend per tenant",
    overTime: "Spend over time, by tenant", gpuBySku: "GPU-hours by SKU and MIG profile", sku: "SKU",
    profile: "MIG / sharing profile", wholeGpu: "whole GPU", capacity: "Capacity type", cost: "Cost",
    usage: "Usage", item: "Item", unit: "Unit", rank: "#", share: "Share", total: "Total",
    unpricedTitle: "Unpriced usage (not included in totals, never counted as 0)", unpriced: "unpriced",
    partly: "+ unpriced usage", items: "Items", skus: "SKUs and capacity types", daily: "Daily spend",
    details: "Detail rows", start: "Start", namespace: "Namespace", price: "Unit price", status: "Status",
    page: "Page", of: "of", prevPage: "Previous page", nextPage: "Next page", rows: "rows",
    downloadCsv: "Download CSV", downloadFocus: "Download FOCUS", focusNote: "FOCUS leaves out unpriced usage (it has no cost).",
    destinations: "Destinations", destination: "Destination", lag: "Lag", pending: "Pending",
    deadLetters: "Dead letters", reasons: "Reasons", clusters: "Clusters", lastReport: "Last report",
    records: "Records", ago: "ago", none: "None", noData: "No usage in this period.",
    signedInAs: "Signed in:", admin: "admin", badToken: "The token is unknown, revoked or expired.",
    expires: "until", chooseTenant: "Choose a tenant", silent: "silent", noTenant: "(no tenant)", recordsUnit: "records", age: "Age",
    budgets: "Budgets", budget: "Budget", scope: "Scope", limit: "Limit", spent: "Spent", forecast: "Forecast",
    crossed: "Thresholds crossed", alerts: "Alerts", noBudgets: "No budgets.", noAlerts: "No alerts.",
    actual: "spend", forecastKind: "forecast", at: "at", when: "When", message: "Message",
    methodNote: "Forecast: run rate of the last {h} h extrapolated to the end of the period — an estimate, not a bill.",
  },
  zh: {
    skip: "跳到内容", overview: "概览", tenantView: "租户", delivery: "投递",
    language: "语言", signOut: "退出", signInTitle: "登录 kubetally", token: "访问令牌",
    tokenHint: "由 kubetally token create 生成的令牌。它会换成会话，浏览器不保存令牌。",
    signIn: "登录", period: "周期", month: "月", week: "周", day: "日", current: "本期",
    cluster: "集群", project: "项目", tenant: "租户", all: "全部", loading: "加载中…",
    totalSpend: "总费用", tenants: "租户数", gpuHours: "GPU 小时", perTenant: "各租户费用",
    overTime: "费用趋势（按租户堆叠）", gpuBySku: "按型号和 MIG 规格的 GPU 小时", sku: "型号",
    profile: "MIG/共享规格", wholeGpu: "整卡", capacity: "容量类型", cost: "费用",
    usage: "用量", item: "计费项", unit: "单位", rank: "#", share: "占比", total: "合计",
    unpricedTitle: "未定价用量（不计入合计，绝不按 0 计）", unpriced: "未定价",
    partly: "+ 未定价用量", items: "计费项", skus: "型号与容量类型", daily: "每日费用",
    details: "明细", start: "开始", namespace: "命名空间", price: "单价", status: "状态",
    page: "第", of: "页，共", prevPage: "上一页", nextPage: "下一页", rows: "行",
    downloadCsv: "下载 CSV", downloadFocus: "下载 FOCUS", focusNote: "FOCUS 不含未定价用量（没有费用）。",
    destinations: "投递目标", destination: "目标", lag: "延迟", pending: "待投递",
    deadLetters: "死信", reasons: "原因", clusters: "集群", lastReport: "最近上报",
    records: "记录数", ago: "前", none: "无", noData: "本周期没有用量。",
    signedInAs: "已登录：", admin: "管理员", badToken: "令牌无效、已撤销或已过期。",
    expires: "有效至", chooseTenant: "选择租户", silent: "无上报", noTenant: "（无租户）", recordsUnit: "条记录", age: "距今",
    budgets: "预算", budget: "预算", scope: "范围", limit: "额度", spent: "已用", forecast: "预测",
    crossed: "已越过的阈值", alerts: "告警", noBudgets: "没有预算。", noAlerts: "没有告警。",
    actual: "实际", forecastKind: "预测", at: "于", when: "时间", message: "内容",
    methodNote: "预测：按最近 {h} 小时的用量速率外推到周期结束，仅为估算，不是账单。",
  },
};
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"];

const S = {
  me: null, lang: "en", view: "overview", kind: "month", start: null,
  cluster: "", project: "", tenant: "", page: 1, pageSize: 20, catalog: {}, tenants: [], seq: 0,
};
const $ = (sel) => document.querySelector(sel);
const t = (key) => (T[S.lang] && T[S.lang][key]) || T.en[key] || key;

// -- exact numbers --------------------------------------------------------------------------------

/** "687.744000" → 687744000n (micro-units). */
function micros(text) {
  if (text === null || text === undefined) return null;
  const negative = text.startsWith("-");
  const [whole, frac = ""] = text.replace("-", "").split(".");
  const value = BigInt(whole || "0") * 1000000n + BigInt((frac + "000000").slice(0, 6));
  return negative ? -value : value;
}
function group3(whole) { return whole.replace(/\B(?=(\d{3})+(?!\d))/g, ","); }
/** Micro-units as the reports print money: at least two decimals, more only when needed. */
function money(value) {
  if (value === null || value === undefined) return null;
  const negative = value < 0n;
  const abs = negative ? -value : value;
  const whole = (abs / 1000000n).toString();
  let frac = (abs % 1000000n).toString().padStart(6, "0").replace(/0+$/, "");
  frac = frac.padEnd(2, "0");
  return `${negative ? "-" : ""}${group3(whole)}.${frac}`;
}
function moneyText(value) { return `${money(value)} ${S.currency || ""}`.trim(); }
/** Exact decimal text, grouped: "2400" → "2,400", "0.142857143" unchanged. */
function quantity(text) {
  if (text === null || text === undefined) return "";
  const [whole, frac] = text.split(".");
  return frac ? `${group3(whole)}.${frac}` : group3(whole);
}
/** Exact sum of decimal strings (BigInt scaled to the longest fraction). */
function addDecimals(values) {
  const scale = Math.max(0, ...values.map((v) => (v.split(".")[1] || "").length));
  let sum = 0n;
  for (const v of values) {
    const [w, f = ""] = v.split(".");
    sum += BigInt(w) * 10n ** BigInt(scale) + BigInt((f + "0".repeat(scale)).slice(0, scale) || "0");
  }
  if (scale === 0) return sum.toString();
  const s = sum.toString().padStart(scale + 1, "0");
  const out = `${s.slice(0, -scale)}.${s.slice(-scale)}`.replace(/\.?0+$/, "");
  return out;
}

// -- dates ------------------------------------------------------------------------------------------

const DAY_MS = 86400000;
function iso(d) { return d.toISOString().slice(0, 10); }
function utc(y, m, d) { return new Date(Date.UTC(y, m, d)); }
function floorPeriod(d, kind) {
  if (kind === "month") return utc(d.getUTCFullYear(), d.getUTCMonth(), 1);
  const day = utc(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
  if (kind === "week") return new Date(day.getTime() - ((day.getUTCDay() + 6) % 7) * DAY_MS);
  return day;
}
function periodEnd(start, kind) {
  if (kind === "month") return utc(start.getUTCFullYear(), start.getUTCMonth() + 1, 1);
  return new Date(start.getTime() + (kind === "week" ? 7 : 1) * DAY_MS);
}
function shift(start, kind, n) {
  if (kind === "month") return utc(start.getUTCFullYear(), start.getUTCMonth() + n, 1);
  return new Date(start.getTime() + n * (kind === "week" ? 7 : 1) * DAY_MS);
}
function range() { return { start: iso(S.start), end: iso(periodEnd(S.start, S.kind)) }; }
function periodLabel() {
  const { start, end } = range();
  if (S.kind === "month") return start.slice(0, 7);
  if (S.kind === "day") return start;
  const last = iso(new Date(periodEnd(S.start, "week").getTime() - DAY_MS));
  return `${start} – ${last}`;
}
function ago(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

// -- DOM helpers ------------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children.flat()) if (c) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}
function card(title, cls, ...body) {
  return el("section", { class: `card ${cls || ""}`, "aria-label": title }, el("h2", {}, title), ...body);
}
function moneyCell(row, attrs = {}) {
  if (row.status === "unpriced" || row.cost === null) {
    return el("td", { class: "num unpriced", ...attrs }, t("unpriced"));
  }
  const value = moneyText(micros(row.cost));
  return el("td", { class: "num", "data-micros": micros(row.cost).toString(), ...attrs }, value,
    row.status === "partly unpriced" ? el("span", { class: "unpriced" }, ` ${t("partly")}`) : null);
}
function table(caption, heads, rows, foot) {
  return el("div", { class: "scroll" }, el("table", { class: heads.length > 4 ? "many" : null },
    el("caption", { class: "sr" }, caption),
    el("thead", {}, el("tr", {}, heads.map(([label, num]) => el("th", { scope: "col", class: num ? "num" : null }, label)))),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: heads.length, class: "empty" }, t("noData")))),
    foot ? el("tfoot", {}, foot) : null));
}
function itemName(category, item) {
  const entry = S.catalog[`${category}/${item}`];
  return entry ? entry.name[S.lang] || entry.name.en : item;
}
function unitName(category, item, unit) {
  const entry = S.catalog[`${category}/${item}`];
  return entry && entry.divisor === "1" && entry.displayUnit ? entry.displayUnit : unit;
}
function colour(name) {
  const i = S.tenants.indexOf(name);
  return COLOURS[(i < 0 ? 0 : i) % COLOURS.length];
}

// -- API --------------------------------------------------------------------------------------------

class SignedOut extends Error {}
async function api(path, params = {}) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === null || v === undefined || v === "") continue;
    for (const one of Array.isArray(v) ? v : [v]) query.append(k, one);
  }
  const response = await fetch(`${path}${query.toString() ? "?" + query : ""}`, {
    credentials: "same-origin", headers: { Accept: "application/json" },
  });
  if (response.status === 401) throw new SignedOut();
  const body = await response.json();
  if (!response.ok) throw new Error(body.reason || response.statusText);
  return body;
}
/** Every row of a paged route (the server caps pageSize). */
async function apiAll(path, params) {
  let page = 1;
  let first = null;
  const items = [];
  for (;;) {
    const answer = await api(path, { ...params, pageSize: 1000, currentPage: page });
    first = first || answer;
    items.push(...answer.items);
    if (items.length >= answer.total || !answer.items.length) break;
    page += 1;
  }
  return { ...first, items };
}
function filters(extra = {}) {
  return { ...range(), cluster: S.cluster, project: S.project, ...extra };
}

// -- charts -----------------------------------------------------------------------------------------

/** Stacked bars: buckets × series, values in micro-units (BigInt). */
function stackedChart(title, buckets, series, values) {
  const W = 720, H = 260, L = 70, B = 28, TOP = 10;
  let max = 0n;
  for (const b of buckets) {
    let sum = 0n;
    for (const s of series) sum += values.get(`${b}|${s}`) || 0n;
    if (sum > max) max = sum;
  }
  const plotW = W - L - 10, plotH = H - B - TOP;
  const scale = (v) => (max === 0n ? 0 : Number((v * 100000n) / max) / 100000) * plotH;
  const bw = plotW / Math.max(1, buckets.length);
  const parts = [];
  parts.push(svg("line", { x1: L, y1: TOP + plotH, x2: W - 10, y2: TOP + plotH, stroke: "#999" }));
  parts.push(svg("text", { x: L - 6, y: TOP + 10, "text-anchor": "end", class: "axis" }, money(max)));
  parts.push(svg("text", { x: L - 6, y: TOP + plotH, "text-anchor": "end", class: "axis" }, "0"));
  buckets.forEach((b, i) => {
    let y = TOP + plotH;
    for (const s of series) {
      const v = values.get(`${b}|${s}`) || 0n;
      if (v === 0n) continue;
      const h = scale(v);
      y -= h;
      parts.push(svg("rect", { x: L + i * bw + bw * 0.1, y, width: bw * 0.8, height: Math.max(h, 0.5), fill: colour(s) },
        svg("title", {}, `${b} ${s}: ${moneyText(v)}`)));
    }
    const every = Math.ceil(buckets.length / 8);
    if (i % every === 0) {
      parts.push(svg("text", { x: L + i * bw + bw / 2, y: H - 8, "text-anchor": "middle", class: "axis" }, b.slice(5)));
    }
  });
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title }, parts);
  const legend = el("div", { class: "legend" }, series.map((s) =>
    el("span", {}, el("span", { class: "swatch", "data-colour": colour(s) }), s || t("noTenant"))));
  for (const sw of legend.querySelectorAll(".swatch")) sw.style.background = sw.dataset.colour;
  return el("div", { class: "chart" }, chart, series.length > 1 ? legend : null);
}
function seriesFrom(rows, key) {
  const buckets = [...new Set(rows.map((r) => r.start.slice(0, 10)))].sort();
  const series = [...new Set(rows.map((r) => r[key]))].sort();
  const values = new Map();
  for (const r of rows) {
    if (r.cost === null) continue;
    const k = `${r.start.slice(0, 10)}|${r[key]}`;
    values.set(k, (values.get(k) || 0n) + micros(r.cost));
  }
  return { buckets, series, values };
}
/** Every day of the period, so a chart shows the gaps too. */
function days() {
  const out = [];
  const end = periodEnd(S.start, S.kind);
  for (let d = S.start; d < end; d = new Date(d.getTime() + DAY_MS)) out.push(iso(d));
  return out;
}
function unpricedBox(list) {
  if (!list || !list.length) return null;
  return el("section", { class: "card wide warn", role: "note", "aria-label": t("unpricedTitle") },
    el("h2", {}, t("unpricedTitle")),
    el("ul", {}, list.map((u) => el("li", {},
      `${itemName(u.category, u.item)}: `, el("strong", { class: "num" }, `${quantity(u.usage)} ${unitName(u.category, u.item, u.unit)}`),
      ` — ${u.reason}`))));
}

// -- views ------------------------------------------------------------------------------------------

async function overview() {
  const totals = await apiAll("/api/v1/costs/total", filters({ kind: "tenant", step: S.kind, orderBy: "cost", order: "desc" }));
  const daily = await apiAll("/api/v1/costs/total", filters({ kind: "tenant", step: "day" }));
  const gpu = await api("/api/v1/costs/labels", filters({ step: S.kind, item: "gpu_hours", by: ["gpu_sku", "gpu_profile"] }));
  S.currency = totals.currency;
  const total = micros(totals.sum.cost);
  const gpuTotal = addDecimals(gpu.items.map((r) => r.usage).concat(["0"]));

  const ranked = totals.items.map((r, i) => {
    const m = r.cost === null ? 0n : micros(r.cost);
    const pct = total > 0n ? Number((m * 1000n) / total) / 10 : 0;
    return el("tr", { "data-tenant": r.tenant },
      el("td", { class: "num" }, i + 1),
      el("td", {}, el("span", { class: "swatch", "data-colour": colour(r.tenant) }), r.tenant || t("noTenant")),
      moneyCell(r, { "data-field": "tenant-cost" }),
      el("td", { class: "num" }, `${pct.toFixed(1)} %`, " ", el("span", { class: "bar", "data-width": String(Math.max(pct, 0.5)) })));
  });
  const foot = el("tr", {}, el("td", {}), el("td", {}, t("total")),
    el("td", { class: "num", "data-field": "total-cost" }, moneyText(total)), el("td", {}));
  const { series, values } = seriesFrom(daily.items, "tenant");
  const gpuRows = gpu.items.map((r) => el("tr", {},
    el("td", {}, r.labels.gpu_sku || "—"),
    el("td", {}, r.labels.gpu_profile || t("wholeGpu")),
    el("td", { class: "num" }, `${quantity(r.usage)} ${unitName(r.category, r.item, r.unit)}`),
    moneyCell(r)));

  const view = el("div", { class: "grid" },
    card(t("totalSpend"), "kpi", el("div", { class: "value", id: "kpi-total" }, moneyText(total)),
      el("div", { class: "sub" }, periodLabel())),
    card(t("tenants"), "kpi", el("div", { class: "value", id: "kpi-tenants" }, new Set(totals.items.map((r) => r.tenant)).size)),
    card(t("gpuHours"), "kpi", el("div", { class: "value", id: "kpi-gpu" }, quantity(gpuTotal))),
    unpricedBox(totals.unpriced),
    card(t("perTenant"), "", table(t("perTenant"),
      [[t("rank"), true], [t("tenant")], [t("cost"), true], [t("share"), true]], ranked, foot)),
    card(t("overTime"), "", stackedChart(t("overTime"), days(), series, values)),
    card(t("gpuBySku"), "wide", table(t("gpuBySku"),
      [[t("sku")], [t("profile")], [t("gpuHours"), true], [t("cost"), true]], gpuRows)));
  return view;
}

async function tenantView() {
  const tenant = S.me.role === "tenant" ? S.me.tenant : S.tenant || S.tenants.filter(Boolean)[0];
  if (!tenant) return el("p", { class: "empty" }, t("noData"));
  S.tenant = tenant;
  const base = filters({ tenant });
  const usage = await apiAll("/api/v1/costs/usage", { ...base, kind: "tenant", step: S.kind, orderBy: "cost", order: "desc" });
  const labels = await api("/api/v1/costs/labels", { ...base, step: S.kind, by: ["gpu_sku", "gpu_profile", "capacity_type"] });
  const daily = await apiAll("/api/v1/costs/total", { ...base, kind: "tenant", step: "day" });
  const detailParams = { ...base, step: "day", orderBy: "start", order: "desc" };
  const detail = await api("/api/v1/costs/detail", { ...detailParams, pageSize: S.pageSize, currentPage: S.page });
  S.currency = usage.currency;
  const total = micros(usage.sum.cost);

  const itemRows = usage.items.map((r) => el("tr", {},
    el("td", {}, itemName(r.category, r.item)),
    el("td", { class: "num" }, `${quantity(r.usage)} ${unitName(r.category, r.item, r.unit)}`),
    moneyCell(r, { "data-field": "item-cost" })));
  const itemFoot = el("tr", {}, el("td", {}, t("total")), el("td", {}),
    el("td", { class: "num", "data-field": "tenant-total" }, moneyText(total)));
  const labelRows = labels.items.map((r) => el("tr", {},
    el("td", {}, itemName(r.category, r.item)),
    el("td", {}, r.labels.gpu_sku || "—"),
    el("td", {}, r.labels.gpu_profile || (r.labels.gpu_sku ? t("wholeGpu") : "—")),
    el("td", {}, r.labels.capacity_type || "—"),
    el("td", { class: "num" }, `${quantity(r.usage)} ${unitName(r.category, r.item, r.unit)}`),
    moneyCell(r)));
  const { values } = seriesFrom(daily.items, "tenant");
  const pages = Math.max(1, Math.ceil(detail.total / S.pageSize));
  const detailRows = detail.items.map((r) => el("tr", { "data-row": "detail" },
    el("td", {}, r.start.slice(0, 10)),
    el("td", {}, r.cluster), el("td", {}, r.project || "—"), el("td", {}, r.namespace),
    el("td", {}, itemName(r.category, r.item)),
    el("td", { class: "num" }, `${quantity(r.usage)} ${unitName(r.category, r.item, r.unit)}`),
    el("td", { class: "num" }, r.price === null ? "—" : `${quantity(r.price)} ${S.currency}`),
    moneyCell(r, { "data-field": "detail-cost" })));
  const download = new URLSearchParams();
  for (const [k, v] of Object.entries({ ...detailParams })) if (v) download.append(k, v);
  const focus = new URLSearchParams({ ...range(), tenant, per: "day", skipUnpriced: "true" });
  if (S.cluster || S.project) {
    focus.set("rows", "resource");
    if (S.cluster) focus.set("cluster", S.cluster);
    if (S.project) focus.set("project", S.project);
  }
  const pager = el("div", { class: "pager" },
    el("button", { type: "button", id: "page-prev", disabled: S.page <= 1, "aria-label": t("prevPage"),
      onclick: () => { S.page -= 1; render(); } }, "◀"),
    el("span", { id: "page-label" }, `${t("page")} ${S.page} ${t("of")} ${pages} (${detail.total} ${t("rows")})`),
    el("button", { type: "button", id: "page-next", disabled: S.page >= pages, "aria-label": t("nextPage"),
      onclick: () => { S.page += 1; render(); } }, "▶"));

  return el("div", { class: "grid" },
    card(t("totalSpend"), "kpi", el("div", { class: "value", id: "kpi-tenant-total" }, moneyText(total)),
      el("div", { class: "sub" }, `${tenant} · ${periodLabel()}`)),
    unpricedBox(usage.unpriced),
    card(t("items"), "", table(t("items"), [[t("item")], [t("usage"), true], [t("cost"), true]], itemRows, itemFoot)),
    card(t("daily"), "", stackedChart(t("daily"), days(), [tenant], values)),
    card(t("skus"), "wide", table(t("skus"),
      [[t("item")], [t("sku")], [t("profile")], [t("capacity")], [t("usage"), true], [t("cost"), true]], labelRows)),
    card(t("details"), "wide",
      table(t("details"), [[t("start")], [t("cluster")], [t("project")], [t("namespace")], [t("item")],
        [t("usage"), true], [t("price"), true], [t("cost"), true]], detailRows),
      pager,
      el("div", { class: "downloads" },
        el("a", { id: "download-csv", href: `/api/v1/costs/detail/archive?${download}`, download: "" }, t("downloadCsv")),
        el("a", { id: "download-focus", href: `/api/v1/focus?${focus}`, download: "" }, t("downloadFocus")),
        el("span", { class: "hint" }, t("focusNote")))));
}

function budgetValue(value, unit, percent) {
  const shown = /^[A-Z]{3}$/.test(unit) ? `${money(micros(value))} ${unit}` : `${quantity(value)} ${unit}`;
  return `${shown} (${percent} %)`;
}

async function budgetsView() {
  const budgets = await api("/api/v1/budgets");
  const alerts = await api("/api/v1/alerts");
  const hours = new Set(budgets.items.map((b) => b.method.match(/last (\d+) h/)[1]));
  const rows = budgets.items.map((b) => el("tr", { "data-budget": b.name },
    el("td", { "data-field": "budget-name" }, b.name),
    el("td", { "data-field": "budget-scope" }, `${t(b.scope.kind)} ${b.scope.value}`),
    el("td", {}, `${b.period.start.slice(0, 10)} – ${b.period.end.slice(0, 10)}`),
    el("td", { class: "num", "data-field": "budget-limit" }, budgetValue(b.limit, b.unit, "100")),
    el("td", { class: "num", "data-field": "budget-spent" }, budgetValue(b.spent, b.unit, b.spentPercent)),
    el("td", { class: "num", "data-field": "budget-forecast" }, budgetValue(b.forecast, b.unit, b.forecastPercent)),
    el("td", { "data-field": "budget-crossed", class: "wrap" }, b.crossed.length
      ? el("ul", {}, b.crossed.map((c) => el("li", {},
        `${c.kind === "actual" ? t("actual") : t("forecastKind")} ${c.threshold} % ${t("at")} ${c.crossedAt.slice(0, 16).replace("T", " ")}`)))
      : t("none"))));
  const alertRows = alerts.items.map((a) => el("tr", { "data-alert": a.id },
    el("td", {}, a.crossedAt.slice(0, 16).replace("T", " ")), el("td", {}, a.budget), el("td", { class: "wrap" }, a.message)));
  return el("div", { class: "grid" },
    card(t("budgets"), "wide", budgets.items.length
      ? table(t("budgets"), [[t("budget")], [t("scope")], [t("period")], [t("limit"), true], [t("spent"), true],
        [t("forecast"), true], [t("crossed")]], rows)
      : el("p", { class: "empty" }, t("noBudgets")),
    ...[...hours].map((h) => el("p", { class: "hint", "data-field": "forecast-method" }, t("methodNote").replace("{h}", h)))),
    card(t("alerts"), "wide", alerts.items.length
      ? table(t("alerts"), [[t("when")], [t("budget")], [t("message")]], alertRows)
      : el("p", { class: "empty" }, t("noAlerts"))));
}

async function deliveryView() {
  const delivery = await api("/api/v1/delivery");
  const clusters = await api("/api/v1/clusters");
  const destRows = delivery.items.map((d) => el("tr", {},
    el("td", {}, d.destination),
    el("td", { class: "num" }, `${d.lagRecords} ${t("recordsUnit")}`, el("br"), d.lagSeconds ? ago(d.lagSeconds) : "0 s"),
    el("td", { class: "num" }, d.pending),
    el("td", { class: "num" }, d.deadLetters),
    el("td", {}, d.deadLetterReasons.length
      ? el("ul", {}, d.deadLetterReasons.map((r) => el("li", {}, `${r.count} × ${r.reason}`))) : t("none"))));
  const clusterRows = clusters.items.map((c) => el("tr", {},
    el("td", {}, c.cluster),
    el("td", {}, c.lastReport),
    el("td", { class: `num ${c.ageSeconds > 7200 ? "age-bad" : ""}` },
      `${ago(c.ageSeconds)} ${t("ago")}`, c.ageSeconds > 7200 ? ` (${t("silent")})` : ""),
    el("td", { class: "num" }, quantity(String(c.records)))));
  const letters = delivery.items.flatMap((d) => d.deadLetterList.map((l) => el("tr", {},
    el("td", {}, d.destination), el("td", {}, l.start.slice(0, 16)), el("td", {}, l.tenant), el("td", {}, l.item),
    el("td", { class: "num" }, quantity(l.quantity)), el("td", {}, l.reason))));
  return el("div", { class: "grid" },
    card(t("destinations"), "wide", table(t("destinations"),
      [[t("destination")], [t("lag"), true], [t("pending"), true], [t("deadLetters"), true], [t("reasons")]], destRows)),
    card(t("clusters"), "wide", table(t("clusters"),
      [[t("cluster")], [t("lastReport")], [t("age"), true], [t("records"), true]], clusterRows)),
    letters.length ? card(t("deadLetters"), "wide", table(t("deadLetters"),
      [[t("destination")], [t("start")], [t("tenant")], [t("item")], [t("usage"), true], [t("reasons")]], letters)) : null);
}

// -- shell ------------------------------------------------------------------------------------------

function translate() {
  document.documentElement.lang = S.lang === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
  $("#lang").value = S.lang;
  if (S.me) $("#who").textContent = `${t("signedInAs")} ${S.me.role === "admin" ? t("admin") : S.me.tenant}`;
}
function writeHash() {
  const h = new URLSearchParams({ view: S.view, period: S.kind, start: iso(S.start) });
  if (S.cluster) h.set("cluster", S.cluster);
  if (S.project) h.set("project", S.project);
  if (S.view === "tenant" && S.tenant && S.me.role === "admin") h.set("tenant", S.tenant);
  if (S.lang !== S.me.lang) h.set("lang", S.lang);
  const next = `#${h}`;
  if (location.hash !== next) history.replaceState(null, "", next);
}
function readHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  if (["overview", "tenant", "budgets", "delivery"].includes(h.get("view"))) S.view = h.get("view");
  if (["month", "week", "day"].includes(h.get("period"))) S.kind = h.get("period");
  const start = h.get("start") && /^\d{4}-\d{2}-\d{2}$/.test(h.get("start")) ? new Date(`${h.get("start")}T00:00:00Z`) : new Date();
  S.start = floorPeriod(start, S.kind);
  S.cluster = h.get("cluster") || "";
  S.project = h.get("project") || "";
  S.tenant = h.get("tenant") || S.tenant;
  if (["en", "zh"].includes(h.get("lang"))) S.lang = h.get("lang");
}
function options(select, values, current, allLabel) {
  select.replaceChildren(...(allLabel ? [el("option", { value: "" }, allLabel)] : []),
    ...values.map((v) => el("option", { value: v, selected: v === current }, v)));
  select.value = current;
}

async function render() {
  const seq = ++S.seq;
  if (S.view === "delivery" && S.me.role !== "admin") S.view = "overview";
  writeHash();
  translate();
  for (const b of document.querySelectorAll("#nav button")) {
    if (b.dataset.view === S.view) b.setAttribute("aria-current", "page"); else b.removeAttribute("aria-current");
  }
  $("#period-kind").value = S.kind;
  $("#period-label").textContent = periodLabel();
  const showTenant = S.view === "tenant" && S.me.role === "admin";
  for (const node of document.querySelectorAll(".only-tenant-view")) node.hidden = !showTenant;
  $("#controls").hidden = S.view === "delivery" || S.view === "budgets";
  const clusters = [...new Set(S.tenantInfo.flatMap((x) => x.clusters))].sort();
  const projects = [...new Set(S.tenantInfo.flatMap((x) => x.projects))].sort();
  options($("#f-cluster"), clusters, S.cluster, t("all"));
  options($("#f-project"), projects, S.project, t("all"));
  // Untenanted usage has no tenant view: an empty tenant filter would mean every tenant.
  const named = S.tenants.filter(Boolean);
  options($("#f-tenant"), named, S.tenant || named[0] || "", null);
  $("#status").textContent = t("loading");
  try {
    const builder = { overview, tenant: tenantView, budgets: budgetsView, delivery: deliveryView }[S.view];
    const content = await builder();
    if (seq !== S.seq) return;
    for (const bar of content.querySelectorAll(".bar")) bar.style.width = `${Number(bar.dataset.width) * 0.6}px`;
    for (const sw of content.querySelectorAll(".swatch[data-colour]")) sw.style.background = sw.dataset.colour;
    $("#view").replaceChildren(content);
    $("#status").textContent = "";
    document.body.dataset.ready = `${S.view}:${S.seq}`;
  } catch (err) {
    if (err instanceof SignedOut) { showSignIn(); return; }
    if (seq === S.seq) $("#status").textContent = String(err.message || err);
  }
}

async function start(me) {
  S.me = me;
  S.lang = S.lang_override || me.lang || "en";
  S.currency = me.currency;
  readHash();
  $("#signin").hidden = true;
  $("#top").hidden = false;
  for (const node of document.querySelectorAll("[data-admin]")) node.hidden = me.role !== "admin";
  const [info, catalog] = await Promise.all([api("/api/v1/tenants"), api("/api/v1/items")]);
  S.tenantInfo = info.items;
  S.tenants = info.items.map((x) => x.tenant);
  S.catalog = Object.fromEntries(catalog.items.map((i) => [`${i.category}/${i.item}`, i]));
  await render();
}

function showSignIn(message) {
  S.me = null;
  $("#top").hidden = true;
  $("#controls").hidden = true;
  $("#view").replaceChildren();
  $("#status").textContent = "";
  $("#signin").hidden = false;
  $("#signin-error").textContent = message || "";
  translate();
  $("#token").focus();
}

async function signIn(event) {
  event.preventDefault();
  const input = $("#token");
  const token = input.value;
  input.value = ""; // the token leaves the page with this one request and is not kept
  const response = await fetch("/session", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ token }),
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    showSignIn(response.status === 401 ? t("badToken") : body.reason || response.statusText);
    return;
  }
  await start(await response.json());
}

async function signOut() {
  await fetch("/session", { method: "DELETE", credentials: "same-origin" });
  history.replaceState(null, "", "/");
  showSignIn();
}

function wire() {
  $("#signin-form").addEventListener("submit", signIn);
  $("#signout").addEventListener("click", signOut);
  $("#lang").addEventListener("change", (e) => { S.lang = e.target.value; render(); });
  for (const b of document.querySelectorAll("#nav button")) {
    b.addEventListener("click", () => { S.view = b.dataset.view; S.page = 1; render(); });
  }
  $("#period-kind").addEventListener("change", (e) => { S.kind = e.target.value; S.start = floorPeriod(S.start, S.kind); S.page = 1; render(); });
  $("#prev").addEventListener("click", () => { S.start = shift(S.start, S.kind, -1); S.page = 1; render(); });
  $("#next").addEventListener("click", () => { S.start = shift(S.start, S.kind, 1); S.page = 1; render(); });
  $("#today").addEventListener("click", () => { S.start = floorPeriod(new Date(), S.kind); S.page = 1; render(); });
  $("#f-cluster").addEventListener("change", (e) => { S.cluster = e.target.value; S.page = 1; render(); });
  $("#f-project").addEventListener("change", (e) => { S.project = e.target.value; S.page = 1; render(); });
  $("#f-tenant").addEventListener("change", (e) => { S.tenant = e.target.value; S.page = 1; render(); });
  window.addEventListener("hashchange", () => { if (S.me) { readHash(); S.page = 1; render(); } });
}

document.addEventListener("DOMContentLoaded", async () => {
  wire();
  const h = new URLSearchParams(location.hash.slice(1));
  if (["en", "zh"].includes(h.get("lang"))) S.lang_override = h.get("lang");
  const response = await fetch("/session", { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.ok) await start(await response.json());
  else {
    const body = await response.json().catch(() => ({}));
    S.lang = S.lang_override || (["en", "zh"].includes(body.lang) ? body.lang : "en");
    showSignIn();
  }
});
