// Mock upstreams speaking each provider's NATIVE protocol, on one 127.0.0.1 server:
//
//   Anthropic     POST /anthropic/v1/messages                      (x-api-key, anthropic-version; SSE events;
//                                                                   thinking + signature when `thinking` is on;
//                                                                   cache writes 5m/1h when `cache_control` is sent)
//                 POST /anthropic/v1/messages/count_tokens         ({"input_tokens": …})
//   OpenAI        POST /openai/v1/responses                        (Bearer; Responses API: plain object or typed
//                                                                   SSE events, usage in response.completed)
//   Azure OpenAI  POST /azure/openai/v1/responses                  (api-key; the v1 API path, same wire)
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
// A last user text containing "no tools" is never answered with a call (agent CLIs send tools on every turn).
// Usage per provider is in USAGE below. Upstream model "mock-fail" makes each provider fail the way it
// documents (overload / unavailable / not found / validation / content filter); "mock-split" makes the
// Anthropic stream arrive in 7-byte writes.
// Wire formats follow the documentation named in tests/fixtures/<provider>/ (native Responses and Messages
// streams: tests/fixtures/native/, which the Rust observer tests read too).

import http from 'node:http';

/** Per-provider reported usage for a reply of `words` words (the native counts the mock sends). */
export const USAGE = {
  anthropic: (words) => ({ input_tokens: 30, cache_read_input_tokens: 10, cache_creation_input_tokens: 0, output_tokens: words }),
  /** Anthropic when the request carries `cache_control`: 200 tokens written, 120 for 5 minutes and 80 for 1 hour. */
  anthropicCached: (words) => ({
    input_tokens: 30,
    cache_read_input_tokens: 10,
    cache_creation_input_tokens: 200,
    cache_creation: { ephemeral_5m_input_tokens: 120, ephemeral_1h_input_tokens: 80 },
    output_tokens: words,
  }),
  /** The Responses API (OpenAI and Azure); `reasoning` tokens when the request sets `reasoning.effort`. */
  responses: (words, reasoning = 0) => ({
    input_tokens: 22,
    input_tokens_details: { cached_tokens: 6 },
    output_tokens: words + reasoning,
    output_tokens_details: { reasoning_tokens: reasoning },
    total_tokens: 22 + words + reasoning,
  }),
  gemini: (words) => ({ promptTokenCount: 25, cachedContentTokenCount: 5, candidatesTokenCount: words, thoughtsTokenCount: 3, totalTokenCount: 28 + words }),
  ollama: (words) => ({ prompt_eval_count: 20, eval_count: words }),
  azure: (words) => ({ prompt_tokens: 18, completion_tokens: words, total_tokens: 18 + words }),
  hf: (words) => ({ prompt_tokens: 31, completion_tokens: words, total_tokens: 31 + words }),
  /** OpenAI's chat completions (POST /openai/v1/chat/completions). */
  openai: (words) => ({ prompt_tokens: 17, completion_tokens: words, total_tokens: 17 + words }),
};

/** What each provider's usage means in OpenAI terms: [prompt, cached, completion, reasoning]. */
export const OPENAI_USAGE = {
  anthropic: (words) => [40, 10, words, 0],
  gemini: (words) => [25, 5, words + 3, 3],
  ollama: (words) => [20, 0, words, 0],
  azure: (words) => [18, 0, words, 0],
  responses: (words, reasoning = 0) => [22, 6, words + reasoning, reasoning],
  hf: (words) => [31, 0, words, 0],
};

const TOOL_ARGS = { location: 'Paris' };

/** The thinking block of an Anthropic answer when the request turns thinking on (its tokens count as output). */
export const THINKING = { text: 'Let me think about this.', signature: 'EqQBCgIYAhIMmockSignature==', tokens: 6 };

/** Reasoning tokens of a Responses answer when the request sets `reasoning.effort`. */
export const RESPONSES_REASONING_TOKENS = 4;

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
  if (toolName && toolResult === undefined && !/no tools/i.test(lastUserText)) return { call: { name: toolName, args: TOOL_ARGS } };
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

/** A Responses API `input` (a string or items). */
function responsesView(body) {
  let lastUserText = '';
  let toolResult;
  const items = typeof body.input === 'string' ? [{ type: 'message', role: 'user', content: body.input }] : (body.input ?? []);
  for (const item of items) {
    if (item.type === 'function_call_output') toolResult = typeof item.output === 'string' ? item.output : textOf(item.output);
    if ((item.type === 'message' || item.type === undefined) && item.role === 'user') lastUserText = textOf(item.content);
  }
  const tool = (body.tools ?? []).find((t) => t.type === 'function');
  return { lastUserText, toolResult, toolName: tool?.name };
}

/** Whether an Anthropic request marks anything for caching (system, tools or message blocks). */
function hasCacheControl(body) {
  return JSON.stringify([body.system ?? null, body.tools ?? null, body.messages ?? null]).includes('"cache_control"');
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
    const thinking = body.thinking?.type === 'enabled' || body.thinking?.type === 'adaptive';
    const words = (d.call ? 5 : d.pieces.length) + (thinking ? THINKING.tokens : 0);
    const usage = hasCacheControl(body) ? USAGE.anthropicCached(words) : USAGE.anthropic(words);
    const stop = d.call ? 'tool_use' : 'end_turn';
    const content = d.call
      ? [{ type: 'tool_use', id: 'toolu_mock1', name: d.call.name, input: d.call.args }]
      : [{ type: 'text', text: d.text }];
    if (thinking) content.unshift({ type: 'thinking', thinking: THINKING.text, signature: THINKING.signature });
    if (!body.stream) {
      return json(res, 200, { id, type: 'message', role: 'assistant', model: body.model, content, stop_reason: stop, stop_sequence: null, usage });
    }
    startStream(res);
    const ev = (name, data) => `event: ${name}\ndata: ${JSON.stringify({ type: name, ...data })}\n\n`;
    const events = [
      ev('message_start', { message: { id, type: 'message', role: 'assistant', content: [], model: body.model, stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } } }),
      ev('ping', {}),
    ];
    let index = 0;
    if (thinking) {
      events.push(ev('content_block_start', { index, content_block: { type: 'thinking', thinking: '', signature: '' } }));
      events.push(ev('content_block_delta', { index, delta: { type: 'thinking_delta', thinking: THINKING.text } }));
      events.push(ev('content_block_delta', { index, delta: { type: 'signature_delta', signature: THINKING.signature } }));
      events.push(ev('content_block_stop', { index }));
      index += 1;
    }
    if (d.call) {
      events.push(ev('content_block_start', { index, content_block: { type: 'tool_use', id: 'toolu_mock1', name: d.call.name, input: {} } }));
      const argText = JSON.stringify(d.call.args);
      for (const piece of [argText.slice(0, 7), argText.slice(7)]) {
        events.push(ev('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: piece } }));
      }
    } else {
      events.push(ev('content_block_start', { index, content_block: { type: 'text', text: '' } }));
      for (const p of d.pieces) events.push(ev('content_block_delta', { index, delta: { type: 'text_delta', text: p } }));
    }
    events.push(ev('content_block_stop', { index }));
    events.push(ev('message_delta', { delta: { stop_reason: stop, stop_sequence: null }, usage: { output_tokens: usage.output_tokens } }));
    events.push(ev('message_stop', {}));
    if (body.model === 'mock-split') {
      // The same bytes in 7-byte writes: events split anywhere, several in one read.
      const all = Buffer.from(events.join(''));
      const pieces = [];
      for (let i = 0; i < all.length; i += 7) pieces.push(all.subarray(i, i + 7));
      return writeAll(res, pieces);
    }
    await writeAll(res, events);
  }

  // Anthropic token counting: a fixed count per request, so tests can compare.
  function anthropicCount(req, res, body) {
    if (req.headers['x-api-key'] !== keys.anthropic) {
      return json(res, 401, { type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } });
    }
    if (!Array.isArray(body.messages)) {
      return json(res, 400, { type: 'error', error: { type: 'invalid_request_error', message: 'messages: Field required' } });
    }
    return json(res, 200, { input_tokens: 40 });
  }

  // OpenAI Responses API (OpenAI and Azure's v1 path): https://platform.openai.com/docs/api-reference/responses
  async function responses(req, res, body, flavour) {
    const authorized = flavour === 'azure' ? req.headers['api-key'] === keys.azure : req.headers.authorization === `Bearer ${keys.openai}`;
    if (!authorized) {
      return json(res, 401, { error: { message: 'Incorrect API key provided.', type: 'invalid_request_error', param: null, code: 'invalid_api_key' } });
    }
    if (body.model === 'mock-fail') {
      return json(res, 500, { error: { message: 'The server had an error while processing your request.', type: 'server_error', param: null, code: null } });
    }
    if (typeof body.input !== 'string' && !Array.isArray(body.input)) {
      return json(res, 400, { error: { message: "Missing required parameter: 'input'.", type: 'invalid_request_error', param: 'input', code: 'missing_required_parameter' } });
    }
    const d = decide(responsesView(body));
    const reasoning = body.reasoning?.effort ? RESPONSES_REASONING_TOKENS : 0;
    const usage = USAGE.responses(d.call ? 5 : d.pieces.length, reasoning);
    const id = 'resp_mock01';
    const created_at = Math.floor(Date.now() / 1000);
    const model = flavour === 'azure' ? body.model : 'gpt-mock-2025-01-01';
    const head = { id, object: 'response', created_at, model, error: null, incomplete_details: null, store: body.store ?? true, max_output_tokens: body.max_output_tokens ?? null };
    const reasoningItem = { id: 'rs_mock01', type: 'reasoning', summary: [], encrypted_content: 'gAAAAmockEncrypted' };
    const message = (status, text) => ({ id: 'msg_mock01', type: 'message', status, role: 'assistant', content: status === 'completed' ? [{ type: 'output_text', text, annotations: [] }] : [] });
    const call = (status, args) => ({ id: 'fc_mock01', type: 'function_call', status, call_id: 'call_mock01', name: d.call?.name, arguments: args });
    const output = [...(reasoning ? [reasoningItem] : []), d.call ? call('completed', JSON.stringify(d.call.args)) : message('completed', d.text)];
    if (!body.stream) return json(res, 200, { ...head, status: 'completed', output, usage });

    startStream(res);
    let seq = 0;
    const ev = (type, data) => `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...data })}\n\n`;
    const events = [ev('response.created', { response: { ...head, status: 'in_progress', output: [], usage: null } }), ev('response.in_progress', { response: { ...head, status: 'in_progress', output: [], usage: null } })];
    let oi = 0;
    if (reasoning) {
      events.push(ev('response.output_item.added', { output_index: oi, item: { ...reasoningItem, encrypted_content: undefined } }));
      events.push(ev('response.output_item.done', { output_index: oi, item: reasoningItem }));
      oi += 1;
    }
    if (d.call) {
      const argText = JSON.stringify(d.call.args);
      events.push(ev('response.output_item.added', { output_index: oi, item: call('in_progress', '') }));
      for (const piece of [argText.slice(0, 6), argText.slice(6)]) {
        events.push(ev('response.function_call_arguments.delta', { item_id: 'fc_mock01', output_index: oi, delta: piece }));
      }
      events.push(ev('response.function_call_arguments.done', { item_id: 'fc_mock01', output_index: oi, arguments: argText }));
      events.push(ev('response.output_item.done', { output_index: oi, item: call('completed', argText) }));
    } else {
      const part = { item_id: 'msg_mock01', output_index: oi, content_index: 0 };
      events.push(ev('response.output_item.added', { output_index: oi, item: message('in_progress') }));
      events.push(ev('response.content_part.added', { ...part, part: { type: 'output_text', text: '', annotations: [] } }));
      for (const p of d.pieces) events.push(ev('response.output_text.delta', { ...part, delta: p, logprobs: [] }));
      events.push(ev('response.output_text.done', { ...part, text: d.text, logprobs: [] }));
      events.push(ev('response.content_part.done', { ...part, part: { type: 'output_text', text: d.text, annotations: [] } }));
      events.push(ev('response.output_item.done', { output_index: oi, item: message('completed', d.text) }));
    }
    if (body.model === 'mock-fail-stream') {
      events.push(ev('response.failed', { response: { ...head, status: 'failed', output: [], error: { code: 'server_error', message: 'The model failed to generate a response.' }, usage: null } }));
    } else {
      events.push(ev('response.completed', { response: { ...head, status: 'completed', output, usage } }));
    }
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

  // ---- media (docs/media.md) ----
  // A vector per input, known to the tests: [index + 0.5, -length / 4, 0.25].
  const vectorOf = (input, i) => [i + 0.5, -String(input).length / 4, 0.25];
  const inputsOf = (input) => (Array.isArray(input) ? input : [input]);
  // OpenAI-compatible /embeddings (also Azure's deployment route and HF's router): usage 3 tokens per input.
  function openaiEmbeddings(res, body) {
    if (body.input === undefined) return json(res, 400, { error: { message: "'input' is required", type: 'invalid_request_error', param: 'input', code: null } });
    const inputs = inputsOf(body.input);
    json(res, 200, {
      object: 'list',
      data: inputs.map((x, i) => {
        const v = vectorOf(x, i);
        const embedding = body.encoding_format === 'base64' ? Buffer.from(new Float32Array(v).buffer).toString('base64') : v;
        return { object: 'embedding', index: i, embedding };
      }),
      model: body.model,
      usage: { prompt_tokens: 3 * inputs.length, total_tokens: 3 * inputs.length },
    });
  }
  // Speech: the audio comes in two parts; the second only after `mock.releaseSpeech()`, so a test can see
  // the first part reach the client while the mock is still sending.
  let speechGate = null;
  mock.speechBytes = (text) => Buffer.from(`AUDIO:${text}:`.padEnd(64, '#'));
  mock.releaseSpeech = () => speechGate?.resolve();
  // Models named silent-* answer headers and then nothing; stall-* send a first part and then go
  // silent: the gateway's first-byte and idle timeouts must end them (the mock never does).
  const forever = () => new Promise(() => {});
  async function speech(res, body) {
    if (String(body.model).startsWith('silent')) {
      res.writeHead(200, { 'content-type': 'audio/mpeg' });
      res.flushHeaders();
      return forever();
    }
    if (String(body.model).startsWith('stall')) {
      res.writeHead(200, { 'content-type': 'audio/mpeg' });
      res.write(mock.speechBytes(body.input).subarray(0, 32));
      return forever();
    }
    if (body.stream_format === 'sse') return speechEvents(res, body);
    let resolve;
    const gate = new Promise((r) => (resolve = r));
    speechGate = { resolve };
    const audio = mock.speechBytes(body.input);
    const type = { mp3: 'audio/mpeg', wav: 'audio/wav', opus: 'audio/opus' }[body.response_format ?? 'mp3'] ?? 'application/octet-stream';
    res.writeHead(200, { 'content-type': type });
    res.flushHeaders();
    res.write(audio.subarray(0, 32));
    mock.speechDone = false;
    await Promise.race([gate, sleep(10_000)]);
    res.end(audio.subarray(32));
    mock.speechDone = true;
  }

  // Speech as events (stream_format: "sse"), as tests/fixtures/media/openai_speech_stream.sse: two
  // speech.audio.delta events carrying the audio in base64, then speech.audio.done with usage
  // (input_tokens: the input's characters, output_tokens: 101).
  mock.speechUsage = (text) => ({ input_tokens: text.length, output_tokens: 101, total_tokens: text.length + 101 });
  async function speechEvents(res, body) {
    startStream(res);
    const audio = mock.speechBytes(body.input);
    const ev = (o) => `data: ${JSON.stringify(o)}\n\n`;
    await writeAll(res, [
      ev({ type: 'speech.audio.delta', audio: audio.subarray(0, 32).toString('base64') }),
      ev({ type: 'speech.audio.delta', audio: audio.subarray(32).toString('base64') }),
      ev({ type: 'speech.audio.done', usage: mock.speechUsage(body.input) }),
    ]);
  }

  // A text field of a multipart form (enough for the gateway's own forms: no nested quoting).
  const formField = (raw, name) => {
    const m = raw.match(new RegExp(`name="${name.replace(/[[\]]/g, '\\$&')}"\r?\n\r?\n([^\r\n]*)`));
    return m ? m[1] : undefined;
  };
  mock.forms = [];
  const TRANSCRIPT = 'Hello world.';
  async function transcription(req, res, raw) {
    const format = formField(raw, 'response_format') ?? 'json';
    mock.forms.push({ url: req.url, format, stream: formField(raw, 'stream'), model: formField(raw, 'model'), file: raw.includes('filename=') });
    if (formField(raw, 'stream') === 'true') {
      startStream(res);
      const ev = (o) => `data: ${JSON.stringify(o)}\n\n`;
      await writeAll(res, [
        ev({ type: 'transcript.text.delta', delta: 'Hello ' }),
        ev({ type: 'transcript.text.delta', delta: 'world.' }),
        ev({ type: 'transcript.text.done', text: TRANSCRIPT, usage: { type: 'tokens', input_tokens: 20, input_token_details: { audio_tokens: 15, text_tokens: 5 }, output_tokens: 4, total_tokens: 24 } }),
      ]);
      return;
    }
    if (format === 'verbose_json') {
      return json(res, 200, { task: 'transcribe', language: 'english', duration: 9.2, text: TRANSCRIPT, segments: [{ id: 0, start: 0, end: 9.2, text: ` ${TRANSCRIPT}` }], usage: { type: 'duration', seconds: 10 } });
    }
    if (format === 'json') {
      return json(res, 200, { text: TRANSCRIPT, usage: { type: 'tokens', input_tokens: 20, input_token_details: { audio_tokens: 15, text_tokens: 5 }, output_tokens: 4, total_tokens: 24 } });
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`${TRANSCRIPT}\n`);
  }
  // Images: one b64 image per `n` (dall-e style), or gpt-image's token usage for models named gpt-image*.
  // With stream (as tests/fixtures/media/openai_images_stream.sse): per image, `partial_images` partial events
  // then a completed event (with gpt-image's usage: 50 input tokens, 40 of them image, 272 output tokens).
  // Models named silent-* / stall-* behave as for speech.
  async function images(req, res, body, raw, edit) {
    const model = edit ? formField(raw, 'model') : body.model;
    const n = Number(edit ? (formField(raw, 'n') ?? 1) : (body.n ?? 1));
    const stream = edit ? formField(raw, 'stream') === 'true' : body.stream === true;
    const partials = Number(edit ? (formField(raw, 'partial_images') ?? 0) : (body.partial_images ?? 0));
    mock.forms.push({ url: req.url, model, n, files: (raw.match(/filename=/g) ?? []).length, stream, partials });
    const gptImage = String(model).startsWith('gpt-image');
    const usage = (k) => ({ input_tokens: 50, input_tokens_details: { image_tokens: 40, text_tokens: 10 }, output_tokens: 272 * k, total_tokens: 50 + 272 * k });
    if (stream) {
      startStream(res);
      if (String(model).startsWith('silent')) return forever();
      const prefix = edit ? 'image_edit' : 'image_generation';
      const ev = (o) => `event: ${o.type}\ndata: ${JSON.stringify(o)}\n\n`;
      const common = { created_at: 1_764_547_200, size: body.size ?? '1024x1024', quality: body.quality ?? 'low', background: 'opaque', output_format: 'png' };
      const events = [];
      for (let i = 0; i < n; i++) {
        for (let p = 0; p < partials; p++) events.push(ev({ type: `${prefix}.partial_image`, b64_json: Buffer.from(`partial ${i}.${p}`).toString('base64'), ...common, partial_image_index: p }));
        events.push(ev({ type: `${prefix}.completed`, b64_json: 'aW1hZ2U=', ...common, ...(gptImage ? { usage: usage(1) } : {}) }));
      }
      if (String(model).startsWith('stall')) {
        res.write(events[0]);
        return forever();
      }
      return writeAll(res, events);
    }
    // dall-e style answers a URL unless b64_json is asked (the API's default); gpt-image always b64_json.
    const asUrl = !gptImage && !edit && body.response_format !== 'b64_json';
    const out = { created: 1_764_547_200, data: Array.from({ length: n }, (_, i) => (asUrl ? { url: `https://images.mock/img-${i}.png` } : { b64_json: 'aW1hZ2U=' })) };
    if (gptImage) out.usage = usage(n);
    json(res, 200, out);
  }

  async function route(req, res, body, raw = '') {
    const url = new URL(req.url, 'http://mock');
    const p = url.pathname;
    let m;
    if (req.method !== 'POST') return json(res, 405, { error: 'POST only' });
    if (p === '/openai/v1/embeddings' || p === '/hf/v1/embeddings') return openaiEmbeddings(res, body);
    if ((m = p.match(/^\/azure\/openai\/deployments\/([^/]+)\/embeddings$/))) {
      if (req.headers['api-key'] !== keys.azure) return json(res, 401, { error: { code: '401', message: 'Access denied due to invalid subscription key.' } });
      return openaiEmbeddings(res, body);
    }
    if ((m = p.match(/^\/gemini\/v1beta\/models\/([^/:]+):batchEmbedContents$/))) {
      const reqs = body.requests ?? [];
      return json(res, 200, { embeddings: reqs.map((r, i) => ({ values: vectorOf(r.content?.parts?.[0]?.text ?? '', i) })) });
    }
    if (p === '/ollama/api/embed') {
      const inputs = inputsOf(body.input);
      return json(res, 200, { model: body.model, embeddings: inputs.map(vectorOf), prompt_eval_count: 5 * inputs.length });
    }
    if (p === '/tei/embed') return json(res, 200, inputsOf(body.inputs).map(vectorOf));
    if (p === '/openai/v1/audio/speech') return speech(res, body);
    if (p === '/openai/v1/audio/transcriptions' || p === '/openai/v1/audio/translations') return transcription(req, res, raw);
    if (p === '/openai/v1/images/generations') return images(req, res, body, raw, false);
    if (p === '/openai/v1/images/edits') return images(req, res, body, raw, true);
    if (p === '/anthropic/v1/messages') return anthropic(req, res, body);
    if (p === '/anthropic/v1/messages/count_tokens') return anthropicCount(req, res, body);
    if (p === '/openai/v1/responses') return responses(req, res, body, 'openai');
    if (p === '/azure/openai/v1/responses') return responses(req, res, body, 'azure');
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
    if (p === '/openai/v1/chat/completions') {
      if (req.headers.authorization !== `Bearer ${keys.openai}`) return json(res, 401, { error: { message: 'Incorrect API key provided.', type: 'invalid_request_error', param: null, code: 'invalid_api_key' } });
      return openaiLike(req, res, body, 'openai');
    }
    if (p === '/hf/v1/chat/completions') {
      if (req.headers.authorization !== `Bearer ${keys.hf}`) return json(res, 401, { error: 'Invalid credentials in Authorization header' });
      return openaiLike(req, res, body, 'hf');
    }
    return json(res, 404, { error: `no mock route ${p}` });
  }

  // ---- providers that misbehave (heldout.test.mjs) ----
  // An upstream model (or Gemini model / Azure deployment in the path) named `mb-<mode>` makes any provider
  // misbehave the same way, whatever its protocol:
  //   mb-slowheaders  headers after `slowHeadersMs`, then the normal answer at once
  //   mb-stall        the normal answer's first bytes (mid-JSON, or the first event), then nothing, forever
  //   mb-noend        a stream's events without its last one ([DONE], message_stop, done: true, …), then close
  //   mb-html         200 with an HTML page          mb-badjson   200 application/json that is not JSON
  //   mb-lenlie       a content-length 100 bytes larger than the body, then the connection closed
  //   mb-429          429 with retry-after: 1        mb-reset     the first half of the answer, then a TCP reset
  //   mb-gzip         the normal answer gzip-encoded (content-encoding: gzip)
  const misbehaviourOf = (req, body) => {
    const where = `${typeof body?.model === 'string' ? body.model : ''} ${req.url}`;
    return /mb-([a-z0-9]+)/.exec(where)?.[1] ?? null;
  };
  /** Runs the normal route into a buffer: { status, headers, chunks } (the events as the route wrote them). */
  async function captured(req, body, raw) {
    const out = { status: 200, headers: {}, chunks: [] };
    const fake = {
      destroyed: false,
      headersSent: false,
      writeHead(status, headers = {}) {
        out.status = status;
        Object.assign(out.headers, headers);
        this.headersSent = true;
        return this;
      },
      setHeader(k, v) {
        out.headers[k] = v;
      },
      flushHeaders() {},
      write(chunk) {
        if (chunk) out.chunks.push(Buffer.from(chunk));
        return true;
      },
      end(chunk) {
        if (chunk && typeof chunk !== 'function') out.chunks.push(Buffer.from(chunk));
      },
    };
    await route(req, fake, body, raw);
    return out;
  }
  async function misbehave(mode, req, res, body, raw) {
    const forever = () => new Promise((r) => res.on('close', r));
    if (mode === '429') return json(res, 429, { error: { message: 'Rate limit reached. Try again in 1s.', type: 'requests', param: null, code: 'rate_limit_exceeded' } }, { 'retry-after': '1' });
    if (mode === 'html') {
      res.writeHead(200, { 'content-type': 'text/html' });
      return res.end('<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>');
    }
    if (mode === 'badjson') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end('{"id":"x","choices":[{"message":{"content":"hi"');
    }
    const out = await captured(req, body, raw);
    const all = Buffer.concat(out.chunks);
    const headers = { ...out.headers };
    delete headers['content-length'];
    if (mode === 'slowheaders') {
      await sleep(1500);
      res.writeHead(out.status, headers);
      return res.end(all);
    }
    if (mode === 'stall') {
      res.writeHead(out.status, headers);
      res.flushHeaders();
      res.write(out.chunks.length > 1 ? out.chunks[0] : all.subarray(0, Math.max(1, all.length >> 1)));
      return forever();
    }
    if (mode === 'noend') {
      res.writeHead(out.status, headers);
      const keep = out.chunks.length > 2 ? out.chunks.slice(0, -1) : [all.subarray(0, Math.max(1, all.length >> 1))];
      for (const c of keep) res.write(c);
      return res.end();
    }
    if (mode === 'lenlie') {
      res.writeHead(out.status, { ...headers, 'content-length': String(all.length + 100) });
      res.write(all);
      await sleep(50);
      return res.socket?.destroy();
    }
    if (mode === 'reset') {
      res.writeHead(out.status, headers);
      res.flushHeaders();
      res.write(all.subarray(0, Math.max(1, all.length >> 1)));
      await sleep(50);
      return res.socket?.resetAndDestroy ? res.socket.resetAndDestroy() : res.socket?.destroy();
    }
    if (mode === 'gzip') {
      const { gzipSync } = await import('node:zlib');
      const zipped = gzipSync(all);
      res.writeHead(out.status, { ...headers, 'content-encoding': 'gzip', 'content-length': String(zipped.length) });
      return res.end(zipped);
    }
    return json(res, 500, { error: `unknown misbehaviour ${mode}` });
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
      // `sent`: every byte written back, in order (tests compare it with what the client got).
      const entry = { method: req.method, url: req.url, headers: req.headers, body, sent: [] };
      requests.push(entry);
      const [write, end] = [res.write.bind(res), res.end.bind(res)];
      res.write = (chunk, ...rest) => {
        if (chunk) entry.sent.push(Buffer.from(chunk));
        return write(chunk, ...rest);
      };
      res.end = (chunk, ...rest) => {
        if (chunk && typeof chunk !== 'function') entry.sent.push(Buffer.from(chunk));
        return end(chunk, ...rest);
      };
      try {
        const mode = misbehaviourOf(req, body);
        if (mode) await misbehave(mode, req, res, body ?? {}, raw);
        else await route(req, res, body ?? {}, raw);
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
