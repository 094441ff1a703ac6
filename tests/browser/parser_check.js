// Run by test_token_balance.py in the browser (execute_async_script):
// EventStreamParser over one text cut in chunks of several sizes.
// Arguments: the URL of tokenledger.js, then the callback.
const [url, done] = arguments;
import(url).then(({ EventStreamParser }) => {
  const text =
    "retry: 3000\n\n: ping\r\nid: 5\r\nevent: balance\r\ndata: {\"a\":1}\r\n" +
    "data:x\r\r" +
    "data\n\nid: 7\nevent: e\ndata:  two spaces\n\nid: bad\0id\ndata: y\n\n" +
    "data: unfinished";
  const out = [];
  for (const size of [1, 2, 3, 7, text.length]) {
    const events = [];
    let retry = null;
    const parser = new EventStreamParser((e) => events.push(e), { onRetry: (ms) => (retry = ms) });
    for (let i = 0; i < text.length; i += size) parser.push(text.slice(i, i + size));
    out.push({ size, retry, events, lastEventId: parser.lastEventId });
  }
  done(out);
}, (error) => done(String(error)));
