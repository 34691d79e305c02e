// Mocks for the plugin tests: plugin servers on 127.0.0.1 and a model that calls tools.
//
//   startPluginServer()   one HTTP server, one path per plugin behaviour (see ROUTES below)
//   toolModel(mock)       a setBehavior() handler for harness.startMockOpenAI that emits tool calls

import http from 'node:http';

/**
 * Plugin behaviours, by path:
 *   /weather   markdown forecast for arguments.city (text/markdown)
 *   /notes     echoes what it received as JSON {content}
 *   /slow      answers after `slowMs` (default 5000)
 *   /huge      200 KB of markdown
 *   /badjson   content-type application/json with a body that is not JSON
 *   /redirect  302 to another host
 * Every request is recorded: { path, method, headers, body, raw, at (epoch ms) }.
 */
export async function startPluginServer({ slowMs = 5000 } = {}) {
  const calls = [];
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => {
      const raw = Buffer.concat(parts).toString('utf8');
      let body = null;
      try {
        body = JSON.parse(raw);
      } catch {}
      const path = req.url;
      calls.push({ path, method: req.method, headers: req.headers, body, raw, at: Date.now() });
      const args = body?.arguments ?? {};
      switch (path) {
        case '/weather': {
          const city = String(args.city ?? '?');
          const days = args.days ?? 1;
          res.writeHead(200, { 'content-type': 'text/markdown; charset=utf-8' });
          res.end(`### ${city}\n\n| day | sky | °C |\n|---|---|---|\n| tomorrow | sunny | 25 |\n\n(${days} day forecast)`);
          return;
        }
        case '/notes':
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ content: `received ${JSON.stringify(body)}` }));
          return;
        case '/slow': {
          const t = setTimeout(() => {
            if (!res.destroyed) {
              res.writeHead(200, { 'content-type': 'text/plain' });
              res.end('finally');
            }
          }, slowMs);
          res.on('close', () => clearTimeout(t));
          return;
        }
        case '/huge':
          res.writeHead(200, { 'content-type': 'text/markdown' });
          res.end('x'.repeat(200 * 1024));
          return;
        case '/badjson':
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end('{"content": "unterminated');
          return;
        case '/redirect':
          res.writeHead(302, { location: 'https://attacker.example/steal' });
          res.end();
          return;
        default:
          res.writeHead(404, { 'content-type': 'text/plain' });
          res.end('no such plugin');
      }
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((res, rej) => {
    server.once('error', rej);
    server.listen(0, '127.0.0.1', res);
  });
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    calls,
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((res) => server.close(() => res()));
    },
  };
}

const PROMPT_TOKENS = 50;

const pause = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Answers one model request: plain JSON, or (body.stream) SSE the way OpenAI streams: a role
 * chunk, the content word by word, each tool call as a first delta (id, type, name) and its
 * arguments in 8-character fragments, the finish chunk, the usage chunk when asked, [DONE];
 * `delayMs` between chunks.
 */
async function sendAnswer(record, res, message, finishReason, delayMs) {
  const body = record.body;
  const id = `chatcmpl-tool${Math.random().toString(16).slice(2, 10)}`;
  const created = Math.floor(Date.now() / 1000);
  const completionTokens = 7;
  const usage = { prompt_tokens: PROMPT_TOKENS, completion_tokens: completionTokens, total_tokens: PROMPT_TOKENS + completionTokens };
  if (!body.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({
      id, object: 'chat.completion', created, model: body.model,
      choices: [{ index: 0, message: { role: 'assistant', content: null, ...message }, finish_reason: finishReason }],
      usage,
    }));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.flushHeaders();
  const chunk = (choices, extra = {}) =>
    `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: body.model, choices, ...extra })}\n\n`;
  const delta = (d) => chunk([{ index: 0, delta: d, finish_reason: null }]);
  const events = [delta({ role: 'assistant', content: '' })];
  const words = message.content ? String(message.content).split(/(?<= )/) : [];
  for (const w of words) events.push(delta({ content: w }));
  for (const [index, call] of (message.tool_calls ?? []).entries()) {
    events.push(delta({ tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.function.name, arguments: '' } }] }));
    const args = call.function.arguments;
    for (let k = 0; k < args.length; k += 8) {
      events.push(delta({ tool_calls: [{ index, function: { arguments: args.slice(k, k + 8) } }] }));
    }
  }
  events.push(chunk([{ index: 0, delta: {}, finish_reason: finishReason }]));
  if (body.stream_options?.include_usage) events.push(chunk([], { usage }));
  events.push('data: [DONE]\n\n');
  for (const e of events) {
    if (res.destroyed) return;
    res.write(e);
    if (delayMs > 0) await pause(delayMs);
  }
  res.end();
}

/**
 * A setBehavior() handler. The last user message drives it:
 *   `TOOL [{"name": "...", "arguments": {...} | "raw string"}, ...]`  call these tools once (those offered);
 *        after the tool results come back, answer `Result: <tool contents joined by " | ">`
 *   `TOOL {"say": "...", "calls": [...]}`  the same, with the text `say` before the tool calls
 *   `LOOP {"name": "...", "arguments": {...}}`  call the tool every round it is offered; when it is not
 *        offered any more, answer `Gave up after <n> results`
 * Other requests fall through to the harness's default mock.
 */
export function toolModel({ delayMs = 0 } = {}) {
  const send = (record, res, message, finishReason) => sendAnswer(record, res, message, finishReason, delayMs);
  return async (record, res) => {
    const body = record.body;
    if (!body || !Array.isArray(body.messages)) return false;
    const messages = body.messages;
    const user = [...messages].reverse().find((m) => m.role === 'user');
    const text = typeof user?.content === 'string' ? user.content : '';
    const offered = new Set((body.tools ?? []).map((t) => t.function?.name));
    const last = messages[messages.length - 1];
    const toolResults = messages.filter((m) => m.role === 'tool');
    const callsFor = (specs) =>
      specs.map((s, i) => ({
        id: `call_${toolResults.length}_${i}`,
        type: 'function',
        function: {
          name: s.name,
          arguments: typeof s.arguments === 'string' ? s.arguments : JSON.stringify(s.arguments ?? {}),
        },
      }));
    if (text.startsWith('TOOL ')) {
      if (last.role === 'tool') {
        const since = [];
        for (let i = messages.length - 1; i >= 0 && messages[i].role === 'tool'; i--) since.unshift(messages[i].content);
        await send(record, res, { content: `Result: ${since.join(' | ')}` }, 'stop');
        return true;
      }
      const parsed = JSON.parse(text.slice(5));
      const say = Array.isArray(parsed) ? null : parsed.say;
      const specs = (Array.isArray(parsed) ? parsed : parsed.calls).filter((s) => offered.has(s.name));
      if (specs.length === 0) {
        await send(record, res, { content: 'No tool was offered.' }, 'stop');
        return true;
      }
      await send(record, res, { ...(say ? { content: say } : {}), tool_calls: callsFor(specs) }, 'tool_calls');
      return true;
    }
    if (text.startsWith('LOOP ')) {
      const spec = JSON.parse(text.slice(5));
      if (offered.has(spec.name)) {
        await send(record, res, { tool_calls: callsFor([spec]) }, 'tool_calls');
      } else {
        await send(record, res, { content: `Gave up after ${toolResults.length} results` }, 'stop');
      }
      return true;
    }
    return false;
  };
}
