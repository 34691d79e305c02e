// Mock upstreams speaking each provider's NATIVE protocol, on one 127.0.0.1 server:
//
//   Anthropic     POST /anthropic/v1/messages                      (x-api-key, anthropic-version; SSE events)
//   Gemini        POST /gemini/v1beta/models/{m}:generateContent   (x-goog-api-key)
//                 POST /gemini/v1beta/models/{m}:streamGenerateContent?alt=sse
//   Ollama        POST /ollama/api/chat                            (NDJSON stream)
//   Azure OpenAI  POST /azure/openai/deployments/{d}/chat/completions?api-version=…  (api-key)
//   HF TGI        POST /hf/v1/chat/completions                     (Bearer; TGI's quirks: string errors,
//                                                                   tool_calls as one object, eos_token)
//
// Every provider answers the same way so tests can compare: the reply is "mock reply to <last user text>",
// one stream event per word; when the request offers tools and holds no tool result yet, the model calls the
// first tool with {"location":"Paris"}; after a tool result it answers "mock reply to tool result <result>".
// Usage per provider is in USAGE below. Upstream model "mock-fail" makes each provider fail the way it
// documents (overload / unavailable / not found / validation / content filter).
// Wire formats follow the documentation named in tests/fixtures/<provider>/.

import http from 'node:http';

/** Per-provider reported usage for a reply of `words` words (the native counts the mock sends). */
export const USAGE = {
  anthropic: (words) => ({ input_tokens: 30, cache_read_input_tokens: 10, cache_creation_input_tokens: 0, output_tokens: words }),
  gemini: (words) => ({ promptTokenCount: 25, cachedContentTokenCount: 5, candidatesTokenCount: words, thoughtsTokenCount: 3, totalTokenCount: 28 + words }),
  ollama: (words) => ({ prompt_eval_count: 20, eval_count: words }),
  azure: (words) => ({ prompt_tokens: 18, completion_tokens: words, total_tokens: 18 + words }),
  hf: (words) => ({ prompt_tokens: 31, completion_tokens: words, total_tokens: 31 + words }),
};

/** What each provider's usage means in OpenAI terms: [prompt, cached, completion, reasoning]. */
export const OPENAI_USAGE = {
  anthropic: (words) => [40, 10, words, 0],
  gemini: (words) => [25, 5, words + 3, 3],
  ollama: (words) => [20, 0, words, 0],
  azure: (words) => [18, 0, words, 0],
  hf: (words) => [31, 0, words, 0],
};

const TOOL_ARGS = { location: 'Paris' };

function textOf(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((p) => (typeof p === 'string' ? p : p?.text ?? (typeof p?.content === 'string' ? p.content : '')))
      .filter(Boolean)
      .join(' ');
  }
  return '';
}

/** The provider-neutral decision: text reply or tool call. */
function decide({ lastUserText, toolResult, toolName }) {
  if (toolName && toolResult === undefined) return { call: { name: toolName, args: TOOL_ARGS } };
  const text = toolResult !== undefined ? `mock reply to tool result ${toolResult}` : `mock reply to ${lastUserText}`.trim();
  const words = text.split(/\s+/).filter(Boolean);
  return { text, pieces: words.map((w, i) => (i === 0 ? w : ` ${w}`)) };
}

// ---- readers of each native request ---------------------------------------------------------------

function anthropicView(body) {
  const msgs = body.messages ?? [];
  let lastUserText = '';
  let toolResult;
  for (const m of msgs) {
    for (const block of Array.isArray(m.content) ? m.content : [{ type: 'text', text: m.content }]) {
      if (block.type === 'tool_result') toolResult = textOf(block.content);
      if (m.role === 'user' && block.type === 'text') lastUserText = block.text;
    }
  }
  return { lastUserText, toolResult, toolName: body.tools?.[0]?.name };
}

function geminiView(body) {
  let lastUserText = '';
  let toolResult;
  for (const c of body.contents ?? []) {
    for (const p of c.parts ?? []) {
      if (p.functionResponse) toolResult = JSON.stringify(p.functionResponse.response);
      if (c.role === 'user' && typeof p.text === 'string') lastUserText = p.text;
    }
  }
  return { lastUserText, toolResult, toolName: body.tools?.[0]?.functionDeclarations?.[0]?.name };
}

function openaiView(body) {
  let lastUserText = '';
  let toolResult;
  for (const m of body.messages ?? []) {
    if (m.role === 'tool') toolResult = textOf(m.content);
    if (m.role === 'user') lastUserText = textOf(m.content);
  }
  return { lastUserText, toolResult, toolName: body.tools?.[0]?.function?.name };
}

// ---- the server ------------------------------------------------------------------------------------

export async function startMockProviders({ chunkDelayMs = 5, keys = {} } = {}) {
  const requests = [];
  const sockets = new Set();
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const mock = { url: '', requests, close };

  const json = (res, status, body, headers = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };
  const startStream = (res, type = 'text/event-stream') => {
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-cache' });
    res.flushHeaders();
  };
  async function writeAll(res, events) {
    for (const e of events) {
      if (res.destroyed) return;
      res.write(e);
      await sleep(chunkDelayMs);
    }
    res.end();
  }

  // Anthropic Messages API
  async function anthropic(req, res, body) {
    if (req.headers['x-api-key'] !== keys.anthropic) {
      return json(res, 401, { type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } });
    }
    if (!req.headers['anthropic-version']) {
      return json(res, 400, { type: 'error', error: { type: 'invalid_request_error', message: 'anthropic-version header is required' } });
    }
    if (typeof body.max_tokens !== 'number') {
      return json(res, 400, { type: 'error', error: { type: 'invalid_request_error', message: 'max_tokens: Field required' } });
    }
    if (body.model === 'mock-fail') {
      return json(res, 529, { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } });
    }
    const d = decide(anthropicView(body));
    const id = 'msg_mock01';
    const words = d.call ? 5 : d.pieces.length;
    const usage = USAGE.anthropic(words);
    const stop = d.call ? 'tool_use' : 'end_turn';
    const content = d.call
      ? [{ type: 'tool_use', id: 'toolu_mock1', name: d.call.name, input: d.call.args }]
      : [{ type: 'text', text: d.text }];
    if (!body.stream) {
      return json(res, 200, { id, type: 'message', role: 'assistant', model: body.model, content, stop_reason: stop, stop_sequence: null, usage });
    }
    startStream(res);
    const ev = (name, data) => `event: ${name}\ndata: ${JSON.stringify({ type: name, ...data })}\n\n`;
    const events = [
      ev('message_start', { message: { id, type: 'message', role: 'assistant', content: [], model: body.model, stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } } }),
      ev('ping', {}),
    ];
    if (d.call) {
      events.push(ev('content_block_start', { index: 0, content_block: { type: 'tool_use', id: 'toolu_mock1', name: d.call.name, input: {} } }));
      const argText = JSON.stringify(d.call.args);
      for (const piece of [argText.slice(0, 7), argText.slice(7)]) {
        events.push(ev('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: piece } }));
      }
    } else {
      events.push(ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }));
      for (const p of d.pieces) events.push(ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: p } }));
    }
    events.push(ev('content_block_stop', { index: 0 }));
    events.push(ev('message_delta', { delta: { stop_reason: stop, stop_sequence: null }, usage: { output_tokens: usage.output_tokens } }));
    events.push(ev('message_stop', {}));
    await writeAll(res, events);
  }

  // Gemini generateContent / streamGenerateContent
  async function gemini(req, res, body, model, stream) {
    if (req.headers['x-goog-api-key'] !== keys.gemini) {
      return json(res, 400, { error: { code: 400, message: 'API key not valid. Please pass a valid API key.', status: 'INVALID_ARGUMENT' } });
    }
    if (model === 'mock-fail') {
      return json(res, 503, { error: { code: 503, message: 'The model is overloaded. Please try again later.', status: 'UNAVAILABLE' } });
    }
    const d = decide(geminiView(body));
    const words = d.call ? 5 : d.pieces.length;
    const usageMetadata = USAGE.gemini(words);
    const base = { modelVersion: model, responseId: 'resp-mock' };
    if (!stream) {
      const parts = d.call ? [{ functionCall: d.call }] : [{ text: d.text }];
      return json(res, 200, { candidates: [{ content: { parts, role: 'model' }, finishReason: 'STOP', index: 0 }], usageMetadata, ...base });
    }
    startStream(res);
    const ev = (data) => `data: ${JSON.stringify(data)}\r\n\r\n`;
    const events = [];
    if (d.call) {
      events.push(ev({ candidates: [{ content: { parts: [{ functionCall: d.call }], role: 'model' }, finishReason: 'STOP', index: 0 }], usageMetadata, ...base }));
    } else {
      d.pieces.forEach((p, i) => {
        const last = i === d.pieces.length - 1;
        events.push(
          ev({
            candidates: [{ content: { parts: [{ text: p }], role: 'model' }, index: 0, ...(last ? { finishReason: 'STOP' } : {}) }],
            usageMetadata: last ? usageMetadata : { promptTokenCount: 25, candidatesTokenCount: i + 1, totalTokenCount: 26 + i },
            ...base,
          }),
        );
      });
    }
    await writeAll(res, events);
  }

  // Ollama /api/chat
  async function ollama(req, res, body) {
    if (body.model === 'mock-fail') return json(res, 404, { error: `model "${body.model}" not found, try pulling it first` });
    const d = decide(openaiView({ ...body, tools: body.tools }));
    const created_at = new Date().toISOString();
    const words = d.call ? 5 : d.pieces.length;
    const counts = USAGE.ollama(words);
    const final = { model: body.model, created_at, done: true, done_reason: 'stop', total_duration: 1000, ...counts };
    if (body.stream === false) {
      const message = d.call
        ? { role: 'assistant', content: '', tool_calls: [{ function: { name: d.call.name, arguments: d.call.args } }] }
        : { role: 'assistant', content: d.text };
      return json(res, 200, { ...final, message });
    }
    startStream(res, 'application/x-ndjson');
    const line = (o) => `${JSON.stringify(o)}\n`;
    const events = [];
    if (d.call) {
      events.push(line({ model: body.model, created_at, message: { role: 'assistant', content: '', tool_calls: [{ function: { name: d.call.name, arguments: d.call.args } }] }, done: false }));
    } else {
      for (const p of d.pieces) events.push(line({ model: body.model, created_at, message: { role: 'assistant', content: p }, done: false }));
    }
    events.push(line({ ...final, message: { role: 'assistant', content: '' } }));
    await writeAll(res, events);
  }

  // OpenAI-shaped servers (Azure, TGI) with their own quirks
  async function openaiLike(req, res, body, flavour) {
    const fail = body.model === 'mock-fail' || req.url.includes('/deployments/mock-fail/');
    if (flavour === 'azure' && fail) {
      return json(res, 400, { error: { message: "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.", type: null, param: 'prompt', code: 'content_filter', status: 400 } });
    }
    if (flavour === 'hf' && fail) {
      return json(res, 422, { error: 'Input validation error: `inputs` must have less than 4096 tokens.', error_type: 'validation' });
    }
    const d = decide(openaiView(body));
    const words = d.call ? 5 : d.pieces.length;
    const usage = USAGE[flavour](words);
    const id = `chatcmpl-${flavour}`;
    const created = Math.floor(Date.now() / 1000);
    const model = flavour === 'azure' ? 'gpt-4o-2024-08-06' : body.model;
    const finish = flavour === 'hf' ? 'eos_token' : d.call ? 'tool_calls' : 'stop';
    if (!body.stream) {
      const args = flavour === 'hf' ? d.call?.args : JSON.stringify(d.call?.args);
      const message = d.call
        ? { role: 'assistant', content: null, tool_calls: [{ id: 'call_0', type: 'function', function: { name: d.call.name, arguments: args } }] }
        : { role: 'assistant', content: d.text };
      return json(res, 200, { id, object: 'chat.completion', created, model, choices: [{ index: 0, message, logprobs: null, finish_reason: finish }], usage });
    }
    startStream(res);
    const chunk = (choices, extra = {}) => `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices, ...extra })}\n\n`;
    const events = [];
    if (flavour === 'azure') {
      events.push(`data: ${JSON.stringify({ choices: [], created: 0, id: '', model: '', object: '', prompt_filter_results: [{ prompt_index: 0, content_filter_results: {} }] })}\n\n`);
    }
    events.push(chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]));
    if (d.call) {
      const argText = JSON.stringify(d.call.args);
      const call = (first, piece) => ({ index: 0, ...(first ? { id: 'call_0', type: 'function' } : {}), function: { name: first ? d.call.name : null, arguments: piece } });
      for (const [i, piece] of [argText.slice(0, 6), argText.slice(6)].entries()) {
        // TGI sends one object instead of an array.
        const toolCalls = flavour === 'hf' ? call(i === 0, piece) : [call(i === 0, piece)];
        events.push(chunk([{ index: 0, delta: { tool_calls: toolCalls }, finish_reason: null }]));
      }
    } else {
      for (const p of d.pieces) events.push(chunk([{ index: 0, delta: { content: p }, finish_reason: null }]));
    }
    events.push(chunk([{ index: 0, delta: {}, finish_reason: finish }]));
    if (body.stream_options?.include_usage) events.push(chunk([], { usage }));
    events.push('data: [DONE]\n\n');
    await writeAll(res, events);
  }

  async function route(req, res, body) {
    const url = new URL(req.url, 'http://mock');
    const p = url.pathname;
    let m;
    if (req.method !== 'POST') return json(res, 405, { error: 'POST only' });
    if (p === '/anthropic/v1/messages') return anthropic(req, res, body);
    if ((m = p.match(/^\/gemini\/v1beta\/models\/([^/:]+):(generateContent|streamGenerateContent)$/))) {
      const stream = m[2] === 'streamGenerateContent';
      if (stream && url.searchParams.get('alt') !== 'sse') return json(res, 400, { error: { code: 400, message: 'alt=sse expected by this mock', status: 'INVALID_ARGUMENT' } });
      return gemini(req, res, body, decodeURIComponent(m[1]), stream);
    }
    if (p === '/ollama/api/chat') return ollama(req, res, body);
    if ((m = p.match(/^\/azure\/openai\/deployments\/([^/]+)\/chat\/completions$/))) {
      if (req.headers['api-key'] !== keys.azure) return json(res, 401, { error: { code: '401', message: 'Access denied due to invalid subscription key.' } });
      if (!url.searchParams.get('api-version')) return json(res, 404, { error: { code: '404', message: 'Resource not found' } });
      return openaiLike(req, res, body, 'azure');
    }
    if (p === '/hf/v1/chat/completions') {
      if (req.headers.authorization !== `Bearer ${keys.hf}`) return json(res, 401, { error: 'Invalid credentials in Authorization header' });
      return openaiLike(req, res, body, 'hf');
    }
    return json(res, 404, { error: `no mock route ${p}` });
  }

  const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', async () => {
      const raw = Buffer.concat(parts).toString('utf8');
      let body = null;
      try {
        body = raw ? JSON.parse(raw) : null;
      } catch {}
      requests.push({ method: req.method, url: req.url, headers: req.headers, body });
      try {
        await route(req, res, body ?? {});
      } catch (err) {
        if (!res.headersSent) json(res, 500, { error: `mock failure: ${err.message}` });
        else res.destroy();
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
  mock.url = `http://127.0.0.1:${server.address().port}`;

  function close() {
    for (const s of sockets) s.destroy();
    return new Promise((res) => server.close(() => res()));
  }
  return mock;
}
