// An instant OpenAI-compatible upstream for the benchmark (scripts/bench.sh), run as its own process
// so that its CPU is never counted as a gateway's.
//
//   node bench/mock-upstream.mjs [port]     (port 0 or none: a free one)
//
// Prints one line `{"port": N}` on stdout once listening, on 127.0.0.1 only.
//
// POST /v1/chat/completions (any path ending in /chat/completions):
//   plain:  one fixed chat.completion JSON with usage;
//   stream: a role chunk, 20 content chunks, a finish chunk, a usage chunk (when the request sets
//           stream_options.include_usage, as every benchmark client does) and `data: [DONE]`.
// Each stream event is its own write, one event-loop turn apart (setImmediate), so that the
// gateway sees separate reads as it would from a real provider, without any timed delay.
// Everything else: 404. The replies are built once; the request body is parsed only for `stream`
// and `stream_options`.

import http from 'node:http';

const CONTENT_CHUNKS = 20;
const MODEL = 'gpt-4o-mini-2024-07-18';
const CREATED = 1_700_000_000;
const WORDS = [
  'The', ' quick', ' brown', ' fox', ' jumps', ' over', ' the', ' lazy', ' dog', ' while',
  ' the', ' gateway', ' meters', ' every', ' token', ' it', ' relays', ' to', ' the', ' client.',
];
if (WORDS.length !== CONTENT_CHUNKS) throw new Error('WORDS must have CONTENT_CHUNKS entries');
const USAGE = { prompt_tokens: 20, completion_tokens: CONTENT_CHUNKS, total_tokens: 20 + CONTENT_CHUNKS };

const PLAIN_BODY = Buffer.from(
  JSON.stringify({
    id: 'chatcmpl-benchmock',
    object: 'chat.completion',
    created: CREATED,
    model: MODEL,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: WORDS.join(''), refusal: null },
        logprobs: null,
        finish_reason: 'stop',
      },
    ],
    usage: USAGE,
    system_fingerprint: 'fp_bench',
  }),
);

const event = (choices, extra = {}) =>
  Buffer.from(
    `data: ${JSON.stringify({
      id: 'chatcmpl-benchmock',
      object: 'chat.completion.chunk',
      created: CREATED,
      model: MODEL,
      system_fingerprint: 'fp_bench',
      choices,
      ...extra,
    })}\n\n`,
  );
const STREAM_EVENTS = [
  event([{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]),
  ...WORDS.map((w) => event([{ index: 0, delta: { content: w }, logprobs: null, finish_reason: null }])),
  event([{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }]),
];
const USAGE_EVENT = event([], { usage: USAGE });
const DONE_EVENT = Buffer.from('data: [DONE]\n\n');

function notFound(res) {
  const body = JSON.stringify({ error: { message: 'not found', type: 'invalid_request_error', param: null, code: null } });
  res.writeHead(404, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function stream(res, events) {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
  let i = 0;
  const next = () => {
    if (res.destroyed) return;
    if (i === events.length) {
      res.end();
      return;
    }
    res.write(events[i++]);
    setImmediate(next);
  };
  next();
}

const server = http.createServer({ keepAliveTimeout: 60_000, noDelay: true }, (req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    if (req.method !== 'POST' || !req.url.split('?')[0].endsWith('/chat/completions')) {
      notFound(res);
      return;
    }
    let body = null;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end('{"error":{"message":"invalid JSON","type":"invalid_request_error","param":null,"code":null}}');
      return;
    }
    if (body && body.stream === true) {
      const events = body.stream_options?.include_usage
        ? [...STREAM_EVENTS, USAGE_EVENT, DONE_EVENT]
        : [...STREAM_EVENTS, DONE_EVENT];
      stream(res, events);
    } else {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': PLAIN_BODY.length });
      res.end(PLAIN_BODY);
    }
  });
});
server.headersTimeout = 60_000;

const port = Number(process.argv[2] ?? 0);
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
const stop = () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
