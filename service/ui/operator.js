// /ui/: the operator view. Asks for an API key with scope `audit`, keeps it in
// sessionStorage (this tab only, never in a URL) and shows every account's
// balance live (GET /v1/balances/stream), the global entry feed
// (GET /v1/entries), the projection lag and the write rate (GET /readyz); with
// a key that also has scope `admin`, the webhook endpoints, failing ones first
// (GET /v1/webhook-endpoints and each one's deliveries).
import { getJson, watchAllBalances } from "./tokenledger.js";
import { API_BASE, effect, el, fmt, purpose, showStatus, typePill, when } from "./ui.js";

const KEY = "tokenledger.operator-key";
const MAX_ROWS = 200; // balance rows rendered (after filter and sort)
const FEED_SIZE = 40;
const FEED_PAGE = 200;
const READY_EVERY_MS = 2000;
const RATE_WINDOW_MS = 10_000;
const WEBHOOKS_EVERY_MS = 5000;
const $ = (field) => document.querySelector(`[data-field="${field}"]`);
const view = (name) => document.querySelector(`[data-view="${name}"]`);
const signOutButton = document.querySelector('[data-action="sign-out"]');

let dashboard = null;

function showSignIn(message = "") {
  dashboard?.close();
  dashboard = null;
  view("dashboard").hidden = true;
  view("signin").hidden = false;
  signOutButton.hidden = true;
  $("signin_error").textContent = message;
  showStatus($("status"), "offline");
  document.getElementById("api-key").focus();
}

function showDashboard(key) {
  view("signin").hidden = true;
  view("dashboard").hidden = false;
  signOutButton.hidden = false;
  dashboard = openDashboard(key);
}

/** Checks the key can read the global feed: `null` when it can, else why not. */
async function refusal(key) {
  try {
    await getJson(API_BASE, "/v1/entries?limit=1", key);
    return null;
  } catch (error) {
    if (error.status === 401) return "This API key is not valid (or was revoked).";
    if (error.status === 403) return "This API key lacks the audit scope.";
    if (error.status === 0) return "The ledger cannot be reached. Try again.";
    return `The ledger answered ${error.status}: ${error.message}`;
  }
}

document.querySelector('[data-form="signin"]').addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("api-key");
  const key = input.value.trim();
  if (!key) return;
  $("signin_error").textContent = "Checking…";
  const problem = await refusal(key);
  if (problem) {
    $("signin_error").textContent = problem;
    return;
  }
  input.value = "";
  sessionStorage.setItem(KEY, key);
  showDashboard(key);
});

signOutButton.addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  showSignIn();
});

function openDashboard(key) {
  const timers = [];
  const balances = new Map(); // account_id → Balance
  const changed = new Set(); // accounts changed since the last render
  let totalAvailable = 0n;
  let totalHeld = 0n;
  let sort = { key: "position", descending: true };
  let filter = "";
  let renderTimer = null;
  let closed = false;

  // ---- balances, live ----
  const stream = watchAllBalances({
    baseUrl: API_BASE,
    token: key,
    onBalance(balance) {
      const before = balances.get(balance.account_id);
      totalAvailable += BigInt(balance.available) - BigInt(before?.available ?? 0);
      totalHeld += BigInt(balance.held) - BigInt(before?.held ?? 0);
      balances.set(balance.account_id, balance);
      if (before) changed.add(balance.account_id);
      scheduleRender();
      scheduleFeed();
    },
    onStatus: (status) => showStatus($("status"), status, status === "live" ? "Streaming every balance" : "Reconnecting…"),
    onError: (error) => showSignIn(error.status === 403 ? "This API key lacks the audit scope." : "The API key was refused. Sign in again."),
  });

  function scheduleRender() {
    if (renderTimer === null) renderTimer = setTimeout(render, 120);
  }

  function compare(a, b) {
    const { key: field, descending } = sort;
    const order = field === "account_id" ? a.account_id.localeCompare(b.account_id) : a[field] - b[field] || a.account_id.localeCompare(b.account_id);
    return descending ? -order : order;
  }

  function render() {
    renderTimer = null;
    const needle = filter.toLowerCase();
    const matching = [];
    for (const balance of balances.values()) {
      if (!needle || balance.account_id.toLowerCase().includes(needle)) matching.push(balance);
    }
    matching.sort(compare);
    const rows = matching.slice(0, MAX_ROWS).map((balance) =>
      el(
        "tr",
        { class: changed.has(balance.account_id) ? "fresh" : "", dataset: { accountId: balance.account_id, position: String(balance.position) } },
        el("td", { class: "id", dataset: { field: "account_id" } }, balance.account_id),
        el("td", { class: "r num available", dataset: { field: "available" } }, fmt(balance.available)),
        el("td", { class: "r num held", dataset: { field: "held" }, "data-label": "held" }, fmt(balance.held)),
        el("td", { class: "r num limit", dataset: { field: "credit_limit" }, "data-label": "limit" }, fmt(balance.credit_limit)),
        el("td", { class: "r time" }, balance.updated_at ? el("time", { datetime: balance.updated_at, title: balance.updated_at }, when(balance.updated_at)) : "—"),
      ),
    );
    changed.clear();
    $("balances").replaceChildren(...rows);
    $("balances_empty").hidden = rows.length > 0;
    $("balances_empty").textContent = balances.size ? "No account matches the filter." : "No account has a balance yet.";
    $("balances_shown").textContent = matching.length > MAX_ROWS ? `${fmt(MAX_ROWS)} of ${fmt(matching.length)} shown` : "";
    $("accounts_count").textContent = fmt(balances.size);
    $("total_available").textContent = totalAvailable.toLocaleString("en-US");
    $("total_held").textContent = totalHeld.toLocaleString("en-US");
  }

  // ---- sorting and filtering (buttons and a search field: keyboard usable) ----
  const headers = [...document.querySelectorAll("th[data-sort]")];
  function showSort() {
    for (const th of headers) {
      if (th.dataset.sort === sort.key) th.setAttribute("aria-sort", sort.descending ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
    }
  }
  const onSort = (event) => {
    const th = event.target.closest("th[data-sort]");
    if (!th) return;
    const field = th.dataset.sort;
    sort = sort.key === field ? { key: field, descending: !sort.descending } : { key: field, descending: field !== "account_id" };
    showSort();
    render();
  };
  const onFilter = (event) => {
    filter = event.target.value.trim();
    render();
  };
  const thead = document.querySelector("table.balances thead");
  thead.addEventListener("click", onSort);
  $("filter").addEventListener("input", onFilter);
  showSort();

  // ---- projection lag and write rate ----
  const samples = []; // [time ms, head position]
  const rates = [];
  let head = null;
  async function readiness() {
    let body = null;
    try {
      const response = await fetch(`${API_BASE}/readyz`, { cache: "no-store", credentials: "omit" });
      body = await response.json();
    } catch {
      $("readiness").textContent = "unreachable";
      return;
    }
    if (closed) return;
    const projection = body.checks?.projection;
    $("readiness").textContent = body.status === "ready" ? "ready" : body.status ?? "not ready";
    if (!projection) return;
    head = projection.head;
    $("projection_lag").textContent = fmt(projection.lag);
    $("head_position").textContent = fmt(projection.head);
    const now = Date.now();
    samples.push([now, projection.head]);
    while (samples.length > 2 && now - samples[1][0] >= RATE_WINDOW_MS) samples.shift();
    if (samples.length >= 2) {
      const [t0, h0] = samples[0];
      const rate = Math.max(0, (projection.head - h0) / ((now - t0) / 1000));
      $("write_rate").textContent = rate >= 100 ? fmt(Math.round(rate)) : rate.toFixed(1);
      rates.push(rate);
      if (rates.length > 60) rates.shift();
      drawSpark();
    }
  }
  function drawSpark() {
    const top = Math.max(1, ...rates);
    const points = rates.map((rate, i) => `${i ? "L" : "M"}${i + 59 - rates.length + 1} ${(27 - (26 * rate) / top).toFixed(1)}`);
    $("write_spark").setAttribute("d", points.join(" "));
  }
  timers.push(setInterval(readiness, READY_EVERY_MS));

  // ---- the global entry feed ----
  let feedAfter = null;
  let feedBusy = false;
  let feedTimer = null;
  function scheduleFeed() {
    if (feedTimer === null) feedTimer = setTimeout(refreshFeed, 250);
  }
  async function refreshFeed() {
    feedTimer = null;
    if (feedBusy || closed) return;
    feedBusy = true;
    try {
      if (feedAfter === null) feedAfter = Math.max(0, (head ?? 0) - FEED_SIZE);
      const page = await getJson(API_BASE, `/v1/entries?after_position=${feedAfter}&limit=${FEED_PAGE}`, key);
      if (closed) return;
      const entries = page.entries;
      if (!entries.length) return;
      feedAfter = entries[entries.length - 1].position;
      const fresh = entries.slice(-FEED_SIZE).reverse();
      const list = $("feed");
      list.prepend(...fresh.map(feedItem));
      while (list.children.length > FEED_SIZE) list.lastElementChild.remove();
      $("feed_empty").hidden = true;
      if (entries.length === FEED_PAGE && head !== null && head - feedAfter > FEED_PAGE) feedAfter = head - FEED_SIZE; // far behind: jump
      if (entries.length === FEED_PAGE) scheduleFeed();
    } catch (error) {
      if (error.status === 401 || error.status === 403) showSignIn("The API key was refused. Sign in again.");
    } finally {
      feedBusy = false;
    }
  }
  function feedItem(entry) {
    const [main] = purpose(entry);
    return el(
      "li",
      { class: "fresh", dataset: { position: String(entry.position), accountId: entry.account_id } },
      el("span", { class: "title" }, typePill(entry.type), " ", el("span", { class: "acct" }, entry.account_id)),
      el("span", { class: "side" }, effect(entry)),
      el("span", { class: "sub" }, `${main === "—" ? "" : `${main} · `}${entry.actor} · ${when(entry.recorded_at)}`),
    );
  }
  timers.push(setInterval(scheduleFeed, 5000));

  // ---- webhook endpoints (scope admin; hidden without it) ----
  async function refreshWebhooks() {
    let endpoints;
    try {
      endpoints = (await getJson(API_BASE, "/v1/webhook-endpoints", key)).endpoints;
    } catch {
      $("webhooks_panel").hidden = true; // no admin scope, or unreachable
      return;
    }
    const rows = [];
    for (const endpoint of endpoints) {
      let deliveries = [];
      try {
        deliveries = (await getJson(API_BASE, `/v1/webhook-endpoints/${encodeURIComponent(endpoint.id)}/deliveries?limit=100`, key)).deliveries;
      } catch {
        continue;
      }
      const failed = deliveries.filter((d) => d.status === "failed").length;
      const retrying = deliveries.filter((d) => d.status === "pending" && d.attempts > 0).length;
      const last = deliveries.find((d) => d.last_response_status !== null)?.last_response_status;
      rows.push({ endpoint, failed, retrying, last });
    }
    if (closed) return;
    rows.sort((a, b) => b.failed + b.retrying - (a.failed + a.retrying));
    $("webhooks").replaceChildren(
      ...rows.map(({ endpoint, failed, retrying, last }) =>
        el(
          "li",
          { class: failed + retrying ? "failing" : "", dataset: { endpointId: endpoint.id, failed: String(failed), retrying: String(retrying) } },
          el("span", { class: "title" }, endpoint.url),
          el("span", { class: "side" }, failed + retrying ? `${fmt(failed)} failed · ${fmt(retrying)} retrying` : "delivering"),
          el("span", { class: "sub" }, `${endpoint.events.join(", ")}${last ? ` · last answer ${last}` : ""}`),
        ),
      ),
    );
    $("webhooks_empty").hidden = rows.length > 0;
    $("webhooks_panel").hidden = false;
  }
  timers.push(setInterval(refreshWebhooks, WEBHOOKS_EVERY_MS));
  refreshWebhooks();

  readiness().then(() => refreshFeed());

  return {
    close() {
      closed = true;
      stream.close();
      for (const timer of timers) clearInterval(timer);
      clearTimeout(renderTimer);
      clearTimeout(feedTimer);
      thead.removeEventListener("click", onSort);
      $("filter").removeEventListener("input", onFilter);
      $("balances").replaceChildren();
      $("feed").replaceChildren();
    },
  };
}

const stored = sessionStorage.getItem(KEY);
if (stored) showDashboard(stored);
else showSignIn();
