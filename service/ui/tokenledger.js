// tokenledger.js: the browser client of the tokenledger API (contract v1.1,
// "Dashboard and browser client"). An ES module without dependencies or a
// build step:
//
//   import { watchBalance } from "https://ledger.example.com/ui/tokenledger.js";
//   const handle = watchBalance({ accountId: "user-42", token, onBalance, onStatus });
//   handle.close();
//
// Importing it also defines <token-balance account-id token base-url>.
//
// Streams are read with fetch() and a WHATWG event-stream parser rather than
// EventSource, so credentials travel in the Authorization header (never in a
// URL), every reconnection sends Last-Event-ID, HTTP errors are told apart
// (401/403 end the watch; 503 honours Retry-After) and a stream that stops
// delivering (no byte, not even a ": ping", for `staleMs`) is reopened.

const MODULE_BASE = (() => {
  try {
    return new URL(import.meta.url).origin;
  } catch {
    return globalThis.location ? globalThis.location.origin : "";
  }
})();

const DEFAULTS = {
  pollIntervalMs: 30_000, // fallback polling of GET …/balance while streams fail
  fallbackAfter: 2, // consecutive stream failures before polling starts
  retryMs: 3_000, // first reconnection delay (the server's `retry:` overrides it)
  maxRetryMs: 15_000, // reconnection back-off ceiling
  staleMs: 45_000, // silence after which an open stream counts as dead (3 pings)
};

/** A failed request: `status` (0 for a network error) and the problem+json body. */
export class LedgerError extends Error {
  constructor(status, problem, retryAfterMs = 0) {
    super(problem?.detail || problem?.title || (status ? `HTTP ${status}` : "network error"));
    this.name = "LedgerError";
    this.status = status;
    this.problem = problem ?? null;
    this.retryAfterMs = retryAfterMs;
  }
  /** 401 and 403 will not heal by retrying (expired, revoked or wrong credentials). */
  get fatal() {
    return this.status === 401 || this.status === 403 || this.status === 422;
  }
}

function authHeaders(token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function trimBase(baseUrl) {
  return String(baseUrl || MODULE_BASE).replace(/\/+$/, "");
}

function accountPath(accountId) {
  return `/v1/accounts/${encodeURIComponent(accountId)}`;
}

async function failure(response) {
  let problem = null;
  try {
    problem = await response.json();
  } catch {
    /* not JSON */
  }
  const seconds = Number(response.headers.get("Retry-After"));
  return new LedgerError(response.status, problem, seconds > 0 ? seconds * 1000 : 0);
}

/**
 * GET `path` (JSON) with the token as a Bearer credential. Resolves to the
 * parsed body (`null` for 304); rejects with a LedgerError.
 */
export async function getJson(baseUrl, path, token, { headers = {}, signal } = {}) {
  let response;
  try {
    response = await fetch(trimBase(baseUrl) + path, {
      headers: { Accept: "application/json", ...authHeaders(token), ...headers },
      cache: "no-store",
      credentials: "omit",
      signal,
    });
  } catch (error) {
    if (error?.name === "AbortError") throw error;
    throw new LedgerError(0, null);
  }
  if (response.status === 304) return null;
  if (!response.ok) throw await failure(response);
  return response.json();
}

/**
 * Incremental parser of `text/event-stream` (WHATWG HTML, "Parsing an event
 * stream"): lines end in CRLF, LF or CR, `:` starts a comment, one space after
 * the colon is dropped, `data` lines join with LF, an `id` holding NUL is
 * ignored, `retry` takes ASCII digits only, and an event is dispatched on a
 * blank line (an unfinished one at the end of the stream is discarded).
 */
export class EventStreamParser {
  #pending = "";
  #skipLF = false;
  #data = "";
  #type = "";
  #id;
  constructor(onEvent, { onRetry = () => {}, lastEventId = "" } = {}) {
    this.onEvent = onEvent;
    this.onRetry = onRetry;
    this.#id = lastEventId;
    this.lastEventId = lastEventId;
  }
  /** Feeds decoded text (any chunking). */
  push(text) {
    let chunk = this.#pending + text;
    this.#pending = "";
    if (this.#skipLF && chunk.startsWith("\n")) chunk = chunk.slice(1);
    this.#skipLF = false;
    const eol = /\r\n|\r|\n/g;
    let start = 0;
    let match;
    while ((match = eol.exec(chunk)) !== null) {
      this.#line(chunk.slice(start, match.index));
      start = eol.lastIndex;
      if (match[0] === "\r" && start === chunk.length) this.#skipLF = true; // CRLF split
    }
    this.#pending = chunk.slice(start);
  }
  #line(line) {
    if (line === "") return this.#dispatch();
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.#type = value;
    else if (field === "data") this.#data += `${value}\n`;
    else if (field === "id" && !value.includes("\0")) this.#id = value;
    else if (field === "retry" && /^[0-9]+$/.test(value)) this.onRetry(Number(value));
  }
  #dispatch() {
    this.lastEventId = this.#id;
    if (this.#data === "") {
      this.#type = "";
      return;
    }
    const event = { type: this.#type || "message", data: this.#data.slice(0, -1), lastEventId: this.#id };
    this.#data = "";
    this.#type = "";
    this.onEvent(event);
  }
}

/**
 * A resumable SSE subscription over fetch(). Calls `onOpen()` when a stream
 * answers 200, `onEvent({type, data, lastEventId})` per event, `onDown(failures)`
 * whenever no stream is open (after a drop or a failed attempt; `failures` counts
 * consecutive attempts that delivered nothing), and `onFatal(LedgerError)` once
 * on 401/403/422, after which it stops. `lastEventId()` names the position to
 * resume after (sent as Last-Event-ID).
 */
export function openEventStream(url, options) {
  const o = { ...DEFAULTS, ...options };
  let closed = false;
  let controller = null;
  let wake = null;
  let retryMs = o.retryMs;
  let failures = 0;

  const sleep = (ms) =>
    new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = null;
        resolve();
      }
      wake = done;
    });
  // A page kept in the back/forward cache must not keep its streams (they
  // would hold the browser's few connections per origin): closed on
  // `pagehide`, reopened on `pageshow`.
  let hidden = null;
  const onOnline = () => wake?.();
  const onOffline = () => controller?.abort();
  const onHide = () => {
    hidden ??= Promise.withResolvers?.() ?? deferred();
    controller?.abort();
  };
  const onShow = () => {
    hidden?.resolve();
    hidden = null;
    wake?.();
  };
  const listen = (add) => {
    for (const [name, handler] of [["online", onOnline], ["offline", onOffline], ["pagehide", onHide], ["pageshow", onShow]]) {
      globalThis[add ? "addEventListener" : "removeEventListener"]?.(name, handler);
    }
  };
  listen(true);

  async function once() {
    controller = new AbortController();
    const { signal } = controller;
    let watchdog = setTimeout(() => controller.abort(), o.staleMs);
    const alive = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => controller.abort(), o.staleMs);
    };
    let opened = 0;
    let delivered = false;
    try {
      const last = o.lastEventId?.();
      const headers = { Accept: "text/event-stream", ...authHeaders(o.token) };
      if (last !== undefined && last !== null && last !== "") headers["Last-Event-ID"] = String(last);
      let response;
      try {
        response = await fetch(url, { headers, cache: "no-store", credentials: "omit", signal });
      } catch {
        return { error: new LedgerError(0, null) };
      }
      const type = response.headers.get("Content-Type") || "";
      if (!response.ok || !type.startsWith("text/event-stream")) return { error: await failure(response) };
      opened = Date.now();
      o.onOpen?.();
      const parser = new EventStreamParser(
        (event) => {
          delivered = true;
          o.onEvent(event);
        },
        { onRetry: (ms) => (retryMs = ms) },
      );
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          alive();
          parser.push(decoder.decode(value, { stream: true }));
        }
      } catch {
        /* dropped, aborted or stale */
      }
      return {};
    } finally {
      clearTimeout(watchdog);
      controller = null;
      // A stream that opened but delivered nothing, briefly, counts as a failure.
      if (opened && (delivered || Date.now() - opened > 10_000)) failures = 0;
      else failures += 1;
    }
  }

  (async () => {
    while (!closed) {
      if (hidden) await hidden.promise;
      if (closed) break;
      const { error } = await once();
      if (closed) break;
      if (error?.fatal) {
        closed = true;
        o.onFatal?.(error);
        break;
      }
      o.onDown?.(failures);
      const backoff = failures ? Math.min(retryMs * 2 ** (failures - 1), o.maxRetryMs) : retryMs;
      const jitter = 0.8 + Math.random() * 0.4;
      await sleep(Math.max(backoff * jitter, error?.retryAfterMs || 0));
    }
    listen(false);
  })();

  return {
    close() {
      closed = true;
      controller?.abort();
      wake?.();
      hidden?.resolve();
    },
  };
}

function deferred() {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  return { promise, resolve };
}

const shared = new Map();

/**
 * Watches one account's balance. `onBalance(balance)` receives every newer
 * balance (by `position`; never an older one after a newer one),
 * `onStatus("live" | "offline")` each change of state, `onError(LedgerError)`
 * a credential refused for good (the watch then stops). Watches of the same
 * account, token and options on one page share one stream, so they always
 * agree. Returns `{close(), balance, status}`.
 */
export function watchBalance({ baseUrl, accountId, token, onBalance, onStatus, onError, ...options }) {
  if (!accountId) throw new TypeError("watchBalance: accountId is required");
  const base = trimBase(baseUrl);
  const o = { ...DEFAULTS, ...options };
  const key = JSON.stringify([base, accountId, token ?? "", o.pollIntervalMs, o.fallbackAfter]);
  let watcher = shared.get(key);
  if (!watcher) {
    watcher = balanceWatcher(base, accountId, token, o, () => shared.delete(key));
    shared.set(key, watcher);
  }
  const listener = { onBalance, onStatus, onError };
  watcher.add(listener);
  let open = true;
  return {
    close() {
      if (open) watcher.remove(listener);
      open = false;
    },
    get balance() {
      return watcher.balance;
    },
    get status() {
      return watcher.status;
    },
  };
}

function parse(data) {
  try {
    return JSON.parse(data);
  } catch {
    return null; // not JSON: ignored
  }
}

function zeroBalance(accountId) {
  return {
    account_id: accountId, available: 0, held: 0, credit_limit: 0, purchased: 0, granted: 0,
    consumed: 0, refunded: 0, deducted: 0, expired: 0, version: 0, position: 0, updated_at: null,
  };
}

function balanceWatcher(base, accountId, token, o, forget) {
  const listeners = new Set();
  const path = accountPath(accountId);
  let balance = null;
  let status = "offline";
  let pollTimer = null;
  let polling = null;
  let stream = null;

  const notify = (name, value) => {
    for (const listener of listeners) {
      try {
        listener[name]?.(value);
      } catch (error) {
        console.error(error);
      }
    }
  };
  const setStatus = (next) => {
    if (next === status) return;
    status = next;
    notify("onStatus", next);
  };
  let open = false; // a stream answered; "live" once a balance is known too
  const offer = (next) => {
    if (!next || typeof next.position !== "number") return;
    if (balance && next.position <= balance.position) return;
    balance = next;
    notify("onBalance", next);
    if (open) setStatus("live");
  };

  async function poll() {
    if (polling) return;
    polling = new AbortController();
    try {
      const headers = balance ? { "If-None-Match": `"${balance.position}"` } : {};
      offer(await getJson(base, `${path}/balance`, token, { headers, signal: polling.signal }));
    } catch (error) {
      if (error?.status === 404 && !balance) offer(zeroBalance(accountId));
      else if (error?.fatal) fatal(error);
    } finally {
      polling = null;
    }
  }
  function startPolling() {
    if (pollTimer !== null) return;
    pollTimer = setInterval(poll, o.pollIntervalMs);
    poll();
  }
  function stopPolling() {
    clearInterval(pollTimer);
    pollTimer = null;
    polling?.abort();
  }
  function fatal(error) {
    stop();
    notify("onError", error);
  }
  function stop() {
    open = false;
    stream?.close();
    stream = null;
    stopPolling();
    setStatus("offline");
  }

  stream = openEventStream(`${base}${path}/balance/stream`, {
    ...o,
    token,
    lastEventId: () => (balance ? balance.position : null),
    onOpen() {
      open = true;
      stopPolling();
      if (balance) setStatus("live");
    },
    onEvent(event) {
      if (event.type === "balance") offer(parse(event.data));
    },
    onDown(failures) {
      open = false;
      setStatus("offline");
      if (failures >= o.fallbackAfter) startPolling();
      else if (!balance) poll(); // nothing to show yet: ask once
    },
    onFatal: fatal,
  });

  return {
    add(listener) {
      listeners.add(listener);
      queueMicrotask(() => {
        if (!listeners.has(listener)) return;
        listener.onStatus?.(status);
        if (balance) listener.onBalance?.(balance);
      });
    },
    remove(listener) {
      listeners.delete(listener);
      if (listeners.size === 0) {
        forget();
        stop();
      }
    },
    get balance() {
      return balance;
    },
    get status() {
      return status;
    },
  };
}

/**
 * Follows one account's entries. With `afterPosition` (0: all history) the
 * entries after it are replayed first; without it, live entries only.
 * `onEntry(entry)` gets each entry once, in version order. Returns `{close()}`.
 */
export function watchEntries({ baseUrl, accountId, token, afterPosition, onEntry, onStatus, onError, ...options }) {
  let last = afterPosition ?? null;
  let version = -1;
  return statusStream(`${trimBase(baseUrl)}${accountPath(accountId)}/entries/stream`, {
    ...options,
    token,
    lastEventId: () => last,
    onStatus,
    onError,
    onEvent(event) {
      if (event.type !== "entry") return;
      const entry = parse(event.data);
      if (!entry) return;
      last = entry.position;
      if (entry.version <= version) return;
      version = entry.version;
      onEntry(entry);
    },
  });
}

/**
 * Every account's balance (`GET /v1/balances/stream`, scope `audit`): first the
 * latest balance of each account (unless `afterPosition` says otherwise), then
 * each change. `onBalance(balance)` is called only for a newer balance of its
 * account. Returns `{close()}`.
 */
export function watchAllBalances({ baseUrl, token, afterPosition = 0, onBalance, onStatus, onError, ...options }) {
  let last = afterPosition;
  const seen = new Map();
  return statusStream(`${trimBase(baseUrl)}/v1/balances/stream`, {
    ...options,
    token,
    lastEventId: () => last,
    onStatus,
    onError,
    onEvent(event) {
      if (event.type !== "balance") return;
      const balance = parse(event.data);
      if (!balance) return;
      last = Math.max(last ?? 0, balance.position);
      if ((seen.get(balance.account_id) ?? -1) >= balance.position) return;
      seen.set(balance.account_id, balance.position);
      onBalance(balance);
    },
  });
}

function statusStream(url, { onStatus, onError, ...options }) {
  let status = "offline";
  const set = (next) => {
    if (next !== status) onStatus?.((status = next));
  };
  queueMicrotask(() => onStatus?.(status));
  const stream = openEventStream(url, {
    ...options,
    onOpen: () => set("live"),
    onDown: () => set("offline"),
    onFatal(error) {
      set("offline");
      onError?.(error);
    },
  });
  return {
    close() {
      stream.close();
      set("offline");
    },
  };
}

/**
 * <token-balance account-id="…" token="…" base-url="…" poll-interval="30">
 * renders the account's `available` (plain digits) and keeps its `status`
 * attribute at "live" or "offline". `base-url` defaults to the origin this
 * module was loaded from; `poll-interval` is the fallback polling period in
 * seconds. Fires `balance` (`detail`: the Balance) on each change and
 * `balanceerror` (`detail`: a LedgerError) when the token is refused for good.
 */
export class TokenBalanceElement extends (globalThis.HTMLElement ?? class {}) {
  static observedAttributes = ["account-id", "token", "base-url", "poll-interval"];
  #handle = null;
  #started = false; // connected: attribute changes restart the watch
  #restart = false;
  connectedCallback() {
    if (!this.hasAttribute("aria-live")) this.setAttribute("aria-live", "polite");
    this.#started = true;
    this.#start();
  }
  disconnectedCallback() {
    this.#started = false;
    this.#stop();
  }
  attributeChangedCallback() {
    if (!this.#started || this.#restart) return;
    this.#restart = true;
    queueMicrotask(() => {
      this.#restart = false;
      if (!this.#started) return;
      this.#stop();
      this.#start();
    });
  }
  /** The latest Balance shown, or null. */
  get balance() {
    return this.#handle?.balance ?? null;
  }
  #start() {
    this.setAttribute("status", "offline");
    const accountId = this.getAttribute("account-id");
    if (!accountId) return;
    const seconds = Number(this.getAttribute("poll-interval"));
    const options = seconds > 0 ? { pollIntervalMs: seconds * 1000 } : {};
    this.#handle = watchBalance({
      ...options,
      baseUrl: this.getAttribute("base-url") || undefined,
      accountId,
      token: this.getAttribute("token") || undefined,
      onBalance: (balance) => {
        this.textContent = String(balance.available);
        this.dispatchEvent(new CustomEvent("balance", { detail: balance }));
      },
      onStatus: (status) => this.setAttribute("status", status),
      onError: (error) => this.dispatchEvent(new CustomEvent("balanceerror", { detail: error })),
    });
  }
  #stop() {
    this.#handle?.close();
    this.#handle = null;
    this.setAttribute("status", "offline");
  }
}

if (globalThis.customElements && !customElements.get("token-balance")) {
  customElements.define("token-balance", TokenBalanceElement);
}
