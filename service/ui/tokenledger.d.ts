// Type declarations of tokenledger.js, the browser client of the tokenledger
// API (contract v1.1). Amounts are integer tokens; positions and versions are
// integers; times are RFC 3339 UTC strings.

/** An account's balance (contract "Balance"). */
export interface Balance {
  account_id: string;
  available: number;
  held: number;
  credit_limit: number;
  purchased: number;
  granted: number;
  consumed: number;
  refunded: number;
  deducted: number;
  expired: number;
  /** The account's own sequence number of its last entry (0: none yet). */
  version: number;
  /** Global log position of the last entry applied; compares balances. */
  position: number;
  updated_at: string | null;
  /** SHA-256 (hex) of the last entry applied. */
  hash?: string;
  /** Set when a read could not wait for the projection. */
  stale?: boolean;
}

export type EntryType =
  | "purchase"
  | "grant"
  | "consumption"
  | "deduction"
  | "refund"
  | "hold"
  | "hold_capture"
  | "hold_release"
  | "hold_expiry"
  | "credit_expiry"
  | "credit_limit_change";

/** One ledger entry (contract "Entry"). */
export interface Entry {
  id: string;
  account_id: string;
  type: EntryType;
  amount: number;
  delta_available: number;
  version: number;
  position: number;
  recorded_at: string;
  idempotency_key: string | null;
  actor: string;
  operation: string | null;
  model: string | null;
  payment_reference: string | null;
  reason: string | null;
  hold_id: string | null;
  refund_of: string | null;
  expires_at: string | null;
  metadata: Record<string, unknown>;
  hash: string;
}

export type Status = "live" | "offline";

/** RFC 9457 problem details as the API answers them. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  code: string;
  [extra: string]: unknown;
}

/** A failed request: `status` 0 for a network error. */
export declare class LedgerError extends Error {
  readonly status: number;
  readonly problem: Problem | null;
  /** From `Retry-After` (milliseconds), 0 when absent. */
  readonly retryAfterMs: number;
  /** True for 401, 403 and 422: retrying will not help. */
  readonly fatal: boolean;
}

/** Tuning shared by every stream of this module (all in milliseconds). */
export interface StreamOptions {
  /** Fallback polling period of GET …/balance while streams fail. Default 30000. */
  pollIntervalMs?: number;
  /** Consecutive failed stream attempts before polling starts. Default 2. */
  fallbackAfter?: number;
  /** First reconnection delay; the server's `retry:` replaces it. Default 3000. */
  retryMs?: number;
  /** Ceiling of the exponential reconnection back-off. Default 15000. */
  maxRetryMs?: number;
  /** Silence (not even a `: ping`) after which a stream is reopened. Default 45000. */
  staleMs?: number;
}

export interface WatchBalanceOptions extends StreamOptions {
  /** The service's origin; default: the origin this module was loaded from. */
  baseUrl?: string;
  accountId: string;
  /** A stream token of the account, or an API key with scope `read`. */
  token?: string;
  /** Every newer balance, never an older one after a newer one (by `position`). */
  onBalance?: (balance: Balance) => void;
  /** "live" while a stream is open, "offline" otherwise; called on each change. */
  onStatus?: (status: Status) => void;
  /** The credential was refused for good (401/403/422); the watch has stopped. */
  onError?: (error: LedgerError) => void;
}

export interface BalanceWatch {
  /** Stops watching (the shared stream closes with its last watcher). */
  close(): void;
  readonly balance: Balance | null;
  readonly status: Status;
}

/**
 * Watches one account's balance live: the balance stream, resumed with
 * Last-Event-ID; while it keeps failing, polling GET …/balance with
 * If-None-Match until it is back.
 */
export declare function watchBalance(options: WatchBalanceOptions): BalanceWatch;

export interface WatchEntriesOptions extends StreamOptions {
  baseUrl?: string;
  accountId: string;
  token?: string;
  /** Replay the entries after this position first (0: all history); default: live only. */
  afterPosition?: number;
  onEntry: (entry: Entry) => void;
  onStatus?: (status: Status) => void;
  onError?: (error: LedgerError) => void;
}

/** Follows one account's entries (each once, in version order). */
export declare function watchEntries(options: WatchEntriesOptions): { close(): void };

export interface WatchAllBalancesOptions extends StreamOptions {
  baseUrl?: string;
  /** An API key with scope `audit`. */
  token: string;
  /** Start after this position; default 0: every account's latest balance first. */
  afterPosition?: number | null;
  onBalance: (balance: Balance) => void;
  onStatus?: (status: Status) => void;
  onError?: (error: LedgerError) => void;
}

/** Every account's balance (GET /v1/balances/stream, scope `audit`). */
export declare function watchAllBalances(options: WatchAllBalancesOptions): { close(): void };

export interface ServerSentEvent {
  type: string;
  data: string;
  lastEventId: string;
}

export interface EventStreamOptions extends StreamOptions {
  token?: string;
  /** The position to resume after, sent as Last-Event-ID. */
  lastEventId?: () => string | number | null | undefined;
  onOpen?: () => void;
  onEvent: (event: ServerSentEvent) => void;
  /** No stream open; `failures` counts consecutive attempts that delivered nothing. */
  onDown?: (failures: number) => void;
  onFatal?: (error: LedgerError) => void;
}

/** A resumable text/event-stream subscription over fetch(). */
export declare function openEventStream(url: string, options: EventStreamOptions): { close(): void };

/** Incremental WHATWG event-stream parser. */
export declare class EventStreamParser {
  constructor(
    onEvent: (event: ServerSentEvent) => void,
    options?: { onRetry?: (milliseconds: number) => void; lastEventId?: string },
  );
  readonly lastEventId: string;
  push(text: string): void;
}

/** GET a JSON resource with a Bearer credential; `null` for 304. */
export declare function getJson<T = unknown>(
  baseUrl: string | undefined,
  path: string,
  token?: string,
  init?: { headers?: Record<string, string>; signal?: AbortSignal },
): Promise<T | null>;

/**
 * `<token-balance account-id token base-url poll-interval>`: renders
 * `available` (plain digits) and keeps `status` at "live" or "offline".
 * `poll-interval` is in seconds (default 30). Events: `balance`
 * (detail: Balance), `balanceerror` (detail: LedgerError).
 */
export declare class TokenBalanceElement extends HTMLElement {
  static readonly observedAttributes: string[];
  readonly balance: Balance | null;
}

declare global {
  interface HTMLElementTagNameMap {
    "token-balance": TokenBalanceElement;
  }
  interface HTMLElementEventMap {
    balance: CustomEvent<Balance>;
    balanceerror: CustomEvent<LedgerError>;
  }
}
