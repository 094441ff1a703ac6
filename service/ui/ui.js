// Helpers shared by the dashboard's pages: formatting, DOM building (text
// only, never HTML from data), notices and the API's base URL.

/** The service's base URL: the parent of /ui/ (works behind a path prefix). */
export const API_BASE = new URL("..", new URL(".", import.meta.url)).href.replace(/\/$/, "");

const grouped = new Intl.NumberFormat("en-US");

/** 12480 → "12,480" (ASCII digits, comma separators, "-" for negatives). */
export function fmt(value) {
  return typeof value === "number" ? grouped.format(value) : "—";
}

/** A signed change for display: "+1,000", "−120", "0". */
export function signed(value) {
  if (!value) return "0";
  return `${value > 0 ? "+" : "−"}${grouped.format(Math.abs(value))}`;
}

const timeOnly = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit", second: "2-digit" });
const dateTime = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

/** An RFC 3339 time as local time (today) or date and time. */
export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  const today = new Date();
  return date.toDateString() === today.toDateString() ? timeOnly.format(date) : dateTime.format(date);
}

/** "in 3 days", "2 hours ago" … */
export function fromNow(iso) {
  if (!iso) return "never";
  const seconds = (new Date(iso).getTime() - Date.now()) / 1000;
  const units = [["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size || unit === "second") return relative.format(Math.round(seconds / size), unit);
  }
  return "";
}

/** Builds an element: el("td", {class: "r", dataset: {field: "x"}}, "text", child…). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

export const ENTRY_LABELS = {
  purchase: "Purchase",
  grant: "Grant",
  consumption: "Consumption",
  deduction: "Deduction",
  refund: "Refund",
  hold: "Hold",
  hold_capture: "Hold captured",
  hold_release: "Hold released",
  hold_expiry: "Hold expired",
  credit_expiry: "Credit expired",
  credit_limit_change: "Credit limit",
};

const TONES = {
  purchase: "credit", grant: "credit", refund: "credit", hold_release: "credit", hold_expiry: "credit",
  consumption: "debit", deduction: "debit", credit_expiry: "debit", hold_capture: "debit",
  hold: "hold",
};

/** The entry's type as a pill. */
export function typePill(type) {
  return el("span", { class: `pill ${TONES[type] ?? ""}`.trim() }, ENTRY_LABELS[type] ?? type);
}

/** The entry's effect on `available` (signed), or its amount when it has none. */
export function effect(entry) {
  if (entry.type === "credit_limit_change") return el("span", { class: "delta" }, fmt(entry.amount));
  const delta = entry.delta_available;
  const tone = delta > 0 ? "pos" : delta < 0 ? "neg" : "";
  return el("span", { class: `delta ${tone}`.trim(), title: `amount ${fmt(entry.amount)}` }, delta ? signed(delta) : fmt(entry.amount));
}

/** What the entry was for: model and operation, else its reason or payment reference. */
export function purpose(entry) {
  const main = entry.model ?? entry.operation ?? entry.reason ?? entry.payment_reference ?? "—";
  const second = entry.model && entry.operation ? entry.operation : null;
  return [main, second];
}

/** A one-line description of a change, for notices. */
export function describe(entry) {
  const label = ENTRY_LABELS[entry.type] ?? entry.type;
  const [main] = purpose(entry);
  const amount = entry.type === "credit_limit_change" ? fmt(entry.amount) : signed(entry.delta_available || 0);
  return { label, amount, detail: main === "—" ? "" : main };
}

/** Shows a short notice in `container` for `ms` milliseconds (at most 3 at once). */
export function notify(container, { label, amount, detail }, ms = 4500) {
  const node = el("div", { class: "toast" }, el("strong", {}, amount), el("span", {}, [label, detail].filter(Boolean).join(" · ")));
  container.append(node);
  while (container.children.length > 3) container.firstElementChild.remove();
  setTimeout(() => {
    node.classList.add("leaving");
    setTimeout(() => node.remove(), 300);
  }, ms);
}

/** Sets a badge element's text to "live"/"offline" and its state attribute. */
export function showStatus(badge, status, title) {
  badge.textContent = status;
  badge.dataset.state = status;
  if (title) badge.title = title;
}
