// Run by test_token_balance.py in the browser (execute_async_script):
// watchBalance() against a scripted fetch(), where every answer is exact.
// Arguments: the URL of tokenledger.js, a scenario name, then the callback.
const [moduleUrl, scenario, done] = arguments;
(async () => {
  const { watchBalance } = await import(moduleUrl);
  const encoder = new TextEncoder();
  const balance = (position, available) => ({ account_id: "a", available, position, version: position });
  const frame = (position, available) =>
    `id: ${position}\nevent: balance\ndata: ${JSON.stringify(balance(position, available))}\n\n`;
  const body = (chunks, open) =>
    new ReadableStream({
      start(controller) {
        for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
        if (!open) controller.close();
      },
    });
  const sse = (chunks, open = false) =>
    new Response(body(chunks, open), { headers: { "Content-Type": "text/event-stream" } });
  const json = (status, value) =>
    new Response(JSON.stringify(value), { status, headers: { "Content-Type": "application/json" } });
  const unavailable = () => json(503, { code: "unavailable" });
  const answers = {
    // A stream that sends an older balance late, ends, and is resumed.
    order: [
      () => sse(["retry: 10\n\n", frame(5, 100), frame(3, 999), frame(7, 80)]),
      () => sse([frame(7, 80), frame(9, 60)], true),
    ],
    // Three failed attempts (polling starts), then the stream is back.
    polling: [unavailable, unavailable, unavailable, () => sse([frame(6, 10)], true)],
    refused: [() => json(401, { code: "unauthorized", detail: "invalid or expired stream token" })],
  }[scenario];

  const calls = [];
  let streamCalls = 0;
  let pollCalls = 0;
  window.fetch = async (url, init) => {
    url = String(url);
    calls.push({
      url,
      lastEventId: init.headers["Last-Event-ID"] ?? null,
      ifNoneMatch: init.headers["If-None-Match"] ?? null,
    });
    if (url.endsWith("/stream")) return answers[Math.min(streamCalls++, answers.length - 1)]();
    pollCalls++;
    return pollCalls === 1 ? json(200, balance(4, 42)) : new Response(null, { status: 304 });
  };

  const seen = [];
  const statuses = [];
  const errors = [];
  let liveAt = null;
  const handle = watchBalance({
    baseUrl: "http://ledger.invalid",
    accountId: "a",
    token: "t",
    retryMs: 10,
    pollIntervalMs: 30,
    onBalance: (b) => seen.push([b.position, b.available]),
    onStatus: (s) => {
      statuses.push(s);
      if (s === "live") liveAt = calls.length;
    },
    onError: (e) => errors.push(e.status),
  });
  const until = async (test) => {
    for (let i = 0; i < 400 && !test(); i++) await new Promise((r) => setTimeout(r, 10));
  };
  if (scenario === "order") await until(() => seen.length >= 3);
  if (scenario === "polling") await until(() => statuses.at(-1) === "live" && seen.length >= 2);
  if (scenario === "refused") await until(() => errors.length > 0);
  await new Promise((r) => setTimeout(r, 200));
  handle.close();
  done({ seen, statuses, errors, calls, liveAt });
})().catch((error) => done({ error: String(error) }));
