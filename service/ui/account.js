// /ui/accounts/{account_id}#token=…: one account, live. The credential (a
// stream token, or an API key with scope `read`) is read from the URL
// fragment, which browsers never send to a server; requests carry it in the
// Authorization header.
import { getJson, watchBalance, watchEntries } from "./tokenledger.js";
import { API_BASE, describe, effect, el, ENTRY_LABELS, fmt, fromNow, notify, purpose, showStatus, typePill, when } from "./ui.js";

const MAX_ENTRIES = 25;
const $ = (field) => document.querySelector(`[data-field="${field}"]`);
const accountId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() ?? "");

let session = null;

// The fragment: token=<stream token or API key>, and optionally poll=<seconds>
// (the fallback polling period while streams fail; default 30).
function fragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const seconds = Number(params.get("poll"));
  return { token: params.get("token") || "", options: seconds > 0 ? { pollIntervalMs: seconds * 1000 } : {} };
}

function start() {
  session?.close();
  const { token, options } = fragment();
  session = openAccount(accountId, token, options);
}

function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = !text;
}

function refusal(error) {
  if (error.status === 401) return "This link has expired or was revoked. Ask for a new one.";
  if (error.status === 403) return "This link does not give access to this account.";
  return `The ledger refused this page: ${error.message}`;
}

function openAccount(account, token, options) {
  const path = `/v1/accounts/${encodeURIComponent(account)}`;
  const closers = [];
  let closed = false;
  let shown = null; // the balance on screen
  let entriesStarted = false;
  let lastEntryVersion = 0;
  let sideTimer = null;
  let noticeTimer = null;
  const panels = { credits: true, holds: true }; // false once the credential is refused
  const badge = $("status");

  $("account_id").textContent = account;
  document.title = `${account} · tokenledger`;
  showError("");
  showStatus(badge, "offline", "Connecting…");
  if (!token) {
    showError("This page needs an access token: open the link you were given (it ends in #token=…).");
    return { close() {} };
  }

  function renderBalance(balance) {
    const previous = shown;
    shown = balance;
    $("available").textContent = fmt(balance.available);
    for (const field of ["held", "credit_limit", "purchased", "granted", "consumed", "refunded", "deducted", "expired"]) {
      $(field).textContent = fmt(balance[field]);
    }
    $("spendable").textContent = fmt(balance.available + balance.credit_limit);
    $("version").textContent = String(balance.version);
    const updated = $("updated_at");
    updated.textContent = balance.updated_at ? when(balance.updated_at) : "never";
    if (balance.updated_at) updated.setAttribute("datetime", balance.updated_at);
    document.title = `${fmt(balance.available)} · ${account} · tokenledger`;
    if (previous && previous.available !== balance.available) {
      const amount = document.querySelector(".amount");
      amount.classList.remove("up", "down");
      void amount.offsetWidth; // restart the colour transition
      amount.classList.add(balance.available > previous.available ? "up" : "down");
      setTimeout(() => amount.classList.remove("up", "down"), 50);
    }
    if (previous) expectNotice(balance, previous);
    if (!entriesStarted) startEntries(balance);
    scheduleSide();
  }

  // A notice per change: the entry's, or (entries stream down) the balance's own.
  function expectNotice(balance, previous) {
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => {
      if (lastEntryVersion >= balance.version) return;
      const delta = balance.available - previous.available;
      notify($("notice"), { label: "Balance updated", amount: delta ? (delta > 0 ? "+" : "−") + fmt(Math.abs(delta)) : "0", detail: "" });
    }, 1500);
  }

  function addEntry(entry, live) {
    if (entry.version <= lastEntryVersion) return;
    lastEntryVersion = entry.version;
    const [main, second] = purpose(entry);
    const row = el(
      "tr",
      { class: live ? "fresh" : "", dataset: { version: String(entry.version), entryId: entry.id, type: entry.type } },
      el("td", { class: "type" }, typePill(entry.type)),
      el("td", { class: "r amount-cell" }, effect(entry)),
      el("td", { class: "purpose" }, main, second ? el("span", { class: "sub" }, second) : null),
      el("td", { class: "actor muted", "data-label": "by" }, entry.actor),
      el("td", { class: "r time" }, el("time", { datetime: entry.recorded_at, title: entry.recorded_at }, when(entry.recorded_at))),
    );
    const body = $("entries");
    body.prepend(row);
    while (body.children.length > MAX_ENTRIES) body.lastElementChild.remove();
    $("entries_empty").hidden = true;
    if (live) notify($("notice"), describe(entry));
  }

  async function startEntries(balance) {
    entriesStarted = true;
    let after = balance.position;
    if (balance.version > 0) {
      const from = Math.max(0, balance.version - MAX_ENTRIES);
      try {
        const page = await getJson(API_BASE, `${path}/entries?after_version=${from}&limit=${MAX_ENTRIES}`, token);
        for (const entry of page.entries) addEntry(entry, false);
        if (page.entries.length) after = page.entries[page.entries.length - 1].position;
      } catch {
        /* the stream below replays from the balance's position */
      }
    } else {
      after = 0;
    }
    if (closed) return;
    const entries = watchEntries({ baseUrl: API_BASE, accountId: account, token, afterPosition: after, onEntry: (entry) => addEntry(entry, true) });
    closers.push(() => entries.close());
  }

  function scheduleSide() {
    if (sideTimer !== null) return;
    sideTimer = setTimeout(() => {
      sideTimer = null;
      refreshPanel("credits", renderCredit);
      refreshPanel("holds", renderHold);
    }, 400);
  }

  async function refreshPanel(name, render) {
    if (!panels[name]) return;
    const panel = document.querySelector(`[data-panel="${name}"]`);
    try {
      const body = await getJson(API_BASE, `${path}/${name}`, token);
      const items = body[name];
      $(name).replaceChildren(...items.map(render));
      $(`${name}_empty`).hidden = items.length > 0;
      panel.hidden = false;
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        panels[name] = false; // a stream token reads balance and entries only
        panel.hidden = true;
      }
    }
  }

  function renderCredit(credit) {
    const share = credit.amount ? Math.max(0, Math.min(100, (100 * credit.remaining) / credit.amount)) : 0;
    const bar = el("span");
    bar.style.width = `${share}%`;
    return el(
      "li",
      { dataset: { entryId: credit.entry_id } },
      el("span", { class: "title" }, ENTRY_LABELS[credit.type] ?? credit.type),
      el("span", { class: "side" }, el("strong", {}, fmt(credit.remaining)), el("span", { class: "muted" }, ` / ${fmt(credit.amount)}`)),
      el("span", { class: "bar", "aria-hidden": "true" }, bar),
      el(
        "span",
        { class: "sub" },
        credit.expires_at ? el("time", { datetime: credit.expires_at, title: credit.expires_at }, `expires ${fromNow(credit.expires_at)}`) : "never expires",
      ),
    );
  }

  function renderHold(hold) {
    return el(
      "li",
      { dataset: { holdId: hold.hold_id } },
      el("span", { class: "title" }, hold.operation ?? "Hold"),
      el("span", { class: "side" }, el("strong", {}, fmt(hold.amount))),
      el("span", { class: "sub" }, el("time", { datetime: hold.expires_at, title: hold.expires_at }, `expires ${fromNow(hold.expires_at)}`)),
    );
  }

  const watch = watchBalance({
    ...options,
    baseUrl: API_BASE,
    accountId: account,
    token,
    onBalance: renderBalance,
    onStatus: (status) => showStatus(badge, status, status === "live" ? "Streaming every change" : "Reconnecting… the balance shown is the last one received"),
    onError: (error) => showError(refusal(error)),
  });
  closers.push(() => watch.close());

  return {
    close() {
      closed = true;
      clearTimeout(sideTimer);
      clearTimeout(noticeTimer);
      for (const close of closers) close();
      $("entries").replaceChildren();
      $("entries_empty").hidden = false;
    },
  };
}

addEventListener("hashchange", start);
start();
