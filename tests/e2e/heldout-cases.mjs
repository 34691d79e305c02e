// The data of the held-out sweep (heldout.test.mjs): every client endpoint, and the hostile cases sent to
// each. Kept apart from the test so that the table reads as a table.
//
// An endpoint: { name, method, path, api: 'openai' | 'anthropic', body: 'json' | 'multipart' | 'none',
//   base (a valid JSON body, or the fields and files of a valid form), billed (a 2xx answer leaves one usage
//   row), maxField (its output-token limit field) }.
// A case: { name, applies(endpoint), request(endpoint, ctx) → { method?, path?, headers, body } , expect }
//   where `expect` is a status, a list of statuses, or 'any' (any status but 5xx: a success of the endpoint's
//   shape or an error of its API's shape).

import { gzipSync } from 'node:zlib';

const chatMessages = [{ role: 'user', content: 'say hi' }];

export const ENDPOINTS = [
  { name: 'chat', method: 'POST', path: '/v1/chat/completions', api: 'openai', body: 'json', billed: true, maxField: 'max_tokens', base: { model: 'tollgate-echo', messages: chatMessages, max_tokens: 16 } },
  { name: 'chat-stream', method: 'POST', path: '/v1/chat/completions', api: 'openai', body: 'json', billed: true, stream: true, maxField: 'max_tokens', base: { model: 'tollgate-echo', messages: chatMessages, max_tokens: 16, stream: true } },
  { name: 'responses', method: 'POST', path: '/v1/responses', api: 'openai', body: 'json', billed: true, maxField: 'max_output_tokens', base: { model: 'tollgate-echo', input: 'say hi', max_output_tokens: 16 } },
  { name: 'responses-stream', method: 'POST', path: '/v1/responses', api: 'openai', body: 'json', billed: true, stream: true, maxField: 'max_output_tokens', base: { model: 'tollgate-echo', input: 'say hi', max_output_tokens: 16, stream: true } },
  { name: 'messages', method: 'POST', path: '/v1/messages', api: 'anthropic', body: 'json', billed: true, maxField: 'max_tokens', base: { model: 'tollgate-echo', max_tokens: 16, messages: chatMessages } },
  { name: 'messages-stream', method: 'POST', path: '/v1/messages', api: 'anthropic', body: 'json', billed: true, stream: true, maxField: 'max_tokens', base: { model: 'tollgate-echo', max_tokens: 16, messages: chatMessages, stream: true } },
  { name: 'count_tokens', method: 'POST', path: '/v1/messages/count_tokens', api: 'anthropic', body: 'json', billed: false, base: { model: 'tollgate-echo', messages: chatMessages } },
  { name: 'embeddings', method: 'POST', path: '/v1/embeddings', api: 'openai', body: 'json', billed: true, base: { model: 'emb-openai', input: 'say hi' } },
  { name: 'images', method: 'POST', path: '/v1/images/generations', api: 'openai', body: 'json', billed: true, base: { model: 'dall-e-3', prompt: 'a cat', size: '1024x1024' } },
  { name: 'speech', method: 'POST', path: '/v1/audio/speech', api: 'openai', body: 'json', billed: true, base: { model: 'tts-1', input: 'hello', voice: 'alloy' } },
  { name: 'tokens', method: 'POST', path: '/v1/tokens/count', api: 'openai', body: 'json', billed: false, base: { model: 'tollgate-echo', messages: chatMessages } },
  { name: 'redeem', method: 'POST', path: '/v1/redeem', api: 'openai', body: 'json', billed: false, base: { code: 'NOPE-NOPE-NOPE' }, okStatus: [400, 404, 409] },
  { name: 'image-edits', method: 'POST', path: '/v1/images/edits', api: 'openai', body: 'multipart', billed: true, base: { fields: { model: 'gpt-image-1', prompt: 'a hat' }, files: [{ field: 'image', name: 'in.png', type: 'image/png', data: Buffer.from('\x89PNG fake image') }] } },
  { name: 'image-variations', method: 'POST', path: '/v1/images/variations', api: 'openai', body: 'multipart', billed: false, base: { fields: { model: 'dall-e-2' }, files: [{ field: 'image', name: 'in.png', type: 'image/png', data: Buffer.from('\x89PNG fake image') }] }, okStatus: [404], unrouted: true },
  { name: 'transcriptions', method: 'POST', path: '/v1/audio/transcriptions', api: 'openai', body: 'multipart', billed: true, base: { fields: { model: 'whisper-1' }, files: [{ field: 'file', name: 'a.wav', type: 'audio/wav', data: null }] } },
  { name: 'translations', method: 'POST', path: '/v1/audio/translations', api: 'openai', body: 'multipart', billed: true, base: { fields: { model: 'whisper-1' }, files: [{ field: 'file', name: 'a.wav', type: 'audio/wav', data: null }] } },
  { name: 'models', method: 'GET', path: '/v1/models', api: 'openai', body: 'none', billed: false },
  { name: 'model', method: 'GET', path: '/v1/models/tollgate-echo', api: 'openai', body: 'none', billed: false },
  { name: 'balance', method: 'GET', path: '/v1/balance', api: 'openai', body: 'none', billed: false },
  { name: 'usage', method: 'GET', path: '/v1/usage', api: 'openai', body: 'none', billed: false },
  { name: 'session', method: 'GET', path: '/v1/sessions/sess-heldout', api: 'openai', body: 'none', billed: false, okStatus: [200, 404] },
  { name: 'session-requests', method: 'GET', path: '/v1/sessions/sess-heldout/requests', api: 'openai', body: 'none', billed: false },
  { name: 'plugins', method: 'GET', path: '/v1/plugins', api: 'openai', body: 'none', billed: false },
  { name: 'console-login', method: 'POST', path: '/console/api/login', api: 'openai', body: 'json', billed: false, console: true, base: { key: '__KEY__' } },
  { name: 'console-me', method: 'GET', path: '/console/api/me', api: 'openai', body: 'none', billed: false, console: true, session: true },
  { name: 'console-usage', method: 'GET', path: '/console/api/usage', api: 'openai', body: 'none', billed: false, console: true, session: true },
  { name: 'console-redeem', method: 'POST', path: '/console/api/redeem', api: 'openai', body: 'json', billed: false, console: true, session: true, base: { code: 'NOPE-NOPE-NOPE' }, okStatus: [400, 404, 409] },
  { name: 'console-plan-request', method: 'POST', path: '/console/api/plan-requests', api: 'openai', body: 'json', billed: false, console: true, session: true, base: { plan_id: 'plan_nope', note: 'sweep' }, okStatus: [400, 404] },
];

/** A small valid WAV file (16 kHz mono, `seconds` long). */
export function wav(seconds = 1) {
  const data = Buffer.alloc(32_000 * seconds);
  const h = Buffer.alloc(44);
  h.write('RIFF', 0);
  h.writeUInt32LE(36 + data.length, 4);
  h.write('WAVEfmt ', 8);
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20);
  h.writeUInt16LE(1, 22);
  h.writeUInt32LE(16_000, 24);
  h.writeUInt32LE(32_000, 28);
  h.writeUInt16LE(2, 32);
  h.writeUInt16LE(16, 34);
  h.write('data', 36);
  h.writeUInt32LE(data.length, 40);
  return Buffer.concat([h, data]);
}

/** A multipart/form-data body of `fields` and `files`, with `boundary`. */
export function multipart({ fields = {}, files = [] }, boundary = 'heldoutBoundary7MA4YWxkTrZu0gW') {
  const parts = [];
  for (const [k, v] of Object.entries(fields)) {
    parts.push(Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  }
  for (const f of files) {
    parts.push(Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="${f.field}"; filename="${f.name}"\r\ncontent-type: ${f.type}\r\n\r\n`));
    parts.push(f.data ?? wav(1));
    parts.push(Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(parts), contentType: `multipart/form-data; boundary=${boundary}` };
}

const isJson = (e) => e.body === 'json';
const isForm = (e) => e.body === 'multipart';
const hasBody = (e) => e.body !== 'none';
const all = () => true;

/** The valid body of `e`, as bytes with its content type. */
export function validBody(e, ctx) {
  if (isJson(e)) {
    const text = JSON.stringify(e.base).replace('"__KEY__"', JSON.stringify(ctx.key));
    return { body: Buffer.from(text), contentType: 'application/json' };
  }
  if (isForm(e)) return multipart(e.base);
  return { body: null, contentType: null };
}

/** `e`'s JSON body with `field` set to the raw JSON text `raw`. */
function withRaw(e, field, raw) {
  const v = { ...e.base, [field]: '__RAW__' };
  return Buffer.from(JSON.stringify(v).replace('"__RAW__"', raw));
}
const jsonReq = (body, ct = 'application/json') => ({ headers: { 'content-type': ct }, body: Buffer.isBuffer(body) ? body : Buffer.from(body) });

// The fields that carry the conversation on each JSON API.
const convField = (e) => (e.name.startsWith('responses') ? 'input' : e.name === 'embeddings' ? 'input' : ['images', 'speech'].includes(e.name) ? (e.name === 'images' ? 'prompt' : 'input') : 'messages');
const chatLike = (e) => ['chat', 'chat-stream', 'messages', 'messages-stream', 'count_tokens', 'tokens'].includes(e.name);
const generation = (e) => ['chat', 'chat-stream', 'responses', 'responses-stream', 'messages', 'messages-stream'].includes(e.name);

/** The bad content parts every chat-like API gets (each a whole `content` value). */
const BAD_CONTENT = {
  'content-number': 5,
  'content-object': {},
  'content-null-part': [null],
  'content-part-no-type': [{ text: 'x' }],
  'content-part-unknown-type': [{ type: 'hologram', data: 'x' }],
  'content-text-no-text': [{ type: 'text' }],
  'content-text-number': [{ type: 'text', text: 7 }],
  'content-image-url-missing': [{ type: 'image_url' }],
  'content-image-url-number': [{ type: 'image_url', image_url: 5 }],
  'content-image-url-bad-data': [{ type: 'image_url', image_url: { url: 'data:image/png;base64,@@@not-base64' } }],
  'content-image-url-empty': [{ type: 'image_url', image_url: { url: '' } }],
  'content-image-anthropic-bad': [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: '@@@' } }],
  'content-image-anthropic-nosource': [{ type: 'image' }],
  'content-input-audio-empty': [{ type: 'input_audio', input_audio: {} }],
  'content-input-audio-bad': [{ type: 'input_audio', input_audio: { data: '@@@', format: 'wav' } }],
  'content-file-bad': [{ type: 'file', file: { file_data: 'not base64 at all', filename: 'x.pdf' } }],
  'content-document-bad': [{ type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: '@@@' } }],
  'content-tool-result-bad': [{ type: 'tool_result', tool_use_id: 5, content: { nested: true } }],
  'content-tool-use-bad': [{ type: 'tool_use', id: null, name: 5, input: 'str' }],
  'content-huge-part-list': Array.from({ length: 50_000 }, () => ({ type: 'text', text: 'a' })),
};

const BAD_TOOLS = {
  'tools-string': '"not tools"',
  'tools-number-items': '[5, 6]',
  'tools-function-missing': '[{"type":"function"}]',
  'tools-parameters-string': '[{"type":"function","function":{"name":"f","parameters":"string"}}]',
  'tools-parameters-array': '[{"type":"function","function":{"name":"f","parameters":[]}}]',
  'tools-name-number': '[{"type":"function","function":{"name":5}}]',
  'tools-anthropic-schema-string': '[{"name":"f","input_schema":"x"}]',
  'tools-deep-schema': `[{"type":"function","function":{"name":"f","parameters":${'{"type":"object","properties":{"a":'.repeat(100)}{}${'}}'.repeat(100)}}}]`,
  'tool-choice-garbage': null,
};

const NUMBERS = {
  'max-1e400': '1e400',
  'max-neg-zero': '-0',
  'max-fraction': '1.5',
  'max-zero': '0',
  'max-negative': '-1',
  'max-2p64': '18446744073709551616',
  'max-2p63': '9223372036854775808',
  'max-string': '"16"',
  'max-null': 'null',
  'max-huge-exponent': '1e18',
};

export const CASES = [];
const add = (name, applies, request, expect = 'any') => CASES.push({ name, applies, request, expect });

// ---- whole bodies ----
add('empty-body', hasBody, () => jsonReq(''), (e) => (isForm(e) ? 415 : 400));
add('json-null', isJson, () => jsonReq('null'), 400);
add('json-array', isJson, () => jsonReq('[]'), 400);
add('json-array-of-body', isJson, (e, c) => jsonReq(`[${validBody(e, c).body}]`), 400);
add('json-number', isJson, () => jsonReq('42'), 400);
add('json-string', isJson, () => jsonReq('"hello"'), 400);
add('json-true', isJson, () => jsonReq('true'), 400);
add('json-truncated', isJson, (e, c) => jsonReq(validBody(e, c).body.subarray(0, 12)), 400);
add('json-trailing-garbage', isJson, (e, c) => jsonReq(Buffer.concat([validBody(e, c).body, Buffer.from('}{')])), 400);
add('invalid-utf8-bytes', isJson, () => jsonReq(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])), 400);
add('invalid-utf8-in-string', isJson, (e, c) => {
  const text = validBody(e, c).body.toString('latin1').replace('say hi', 'say \u00ff\u00fe hi').replace('a cat', 'a \u00ff cat').replace('hello', 'he\u00ffllo');
  return jsonReq(Buffer.from(text, 'latin1'));
});
add('lone-surrogate-escape', isJson, (e, c) => jsonReq(validBody(e, c).body.toString().replace('say hi', 'say \\ud800 hi').replace('hello', '\\udfff')));
add('utf8-bom', isJson, (e, c) => jsonReq(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), validBody(e, c).body])));
add('utf16-body', isJson, (e, c) => jsonReq(Buffer.from(validBody(e, c).body.toString(), 'utf16le'), 'application/json; charset=utf-16'), 400);
add('nul-bytes', isJson, () => jsonReq(Buffer.alloc(64, 0)), 400);
// Bodies of the small endpoints (login, redeem, plan requests) are limited to 4 KiB: 413 first.
add('deep-arrays-1e5', isJson, () => jsonReq('['.repeat(100_000) + ']'.repeat(100_000)), [400, 413]);
add('deep-objects-1e5', isJson, () => jsonReq('{"a":'.repeat(100_000) + '1' + '}'.repeat(100_000)), [400, 413]);
add('deep-in-field', isJson, (e) => jsonReq(withRaw(e, 'metadata', '['.repeat(50_000) + ']'.repeat(50_000))), [400, 413]);
add('array-1e6-elements', isJson, (e) => jsonReq(withRaw(e, 'stop', `[${'0,'.repeat(999_999)}0]`)), 413);
add('array-3e5-in-field', isJson, (e) => jsonReq(withRaw(e, 'stop', `[${'0,'.repeat(299_999)}0]`)));
add('huge-string-field', isJson, (e) => jsonReq(withRaw(e, 'user', JSON.stringify('u'.repeat(900_000)))));
add('over-body-limit', hasBody, () => jsonReq(Buffer.alloc((1 << 20) + 10, 0x20)), (e) => (isForm(e) ? 415 : 413));
add('over-body-limit-form', isForm, () => ({ headers: { 'content-type': 'multipart/form-data; boundary=x' }, body: Buffer.alloc(30 << 20, 0x20) }), 413);
add('duplicate-keys', isJson, (e, c) => jsonReq(validBody(e, c).body.toString().replace(/^\{/, '{"model":"other-model",')));
add('duplicate-key-stream', (e) => generation(e), (e, c) => jsonReq(validBody(e, c).body.toString().replace(/^\{/, '{"stream":true,')));
add('unknown-fields', isJson, (e) => jsonReq(JSON.stringify({ ...e.base, zz_unknown: { a: [1, 2] }, __proto__x: 1 })));
add('proto-pollution', isJson, (e, c) => jsonReq(validBody(e, c).body.toString().replace(/^\{/, '{"__proto__":{"admin":true},"constructor":{"prototype":{}},')));
for (const [name, raw] of Object.entries(NUMBERS)) {
  add(name, (e) => !!e.maxField, (e) => jsonReq(withRaw(e, e.maxField, raw)), raw === '0' || raw === '1e18' || raw === '1.5' || raw === '-0' || raw === 'null' || raw === '"16"' ? 'any' : 400);
}
add('temperature-nan-text', (e) => generation(e), (e) => jsonReq(withRaw(e, 'temperature', 'NaN')), 400);
add('temperature-1e400', (e) => generation(e), (e) => jsonReq(withRaw(e, 'temperature', '1e400')), 400);
add('n-with-stream', (e) => e.name === 'chat-stream', (e) => jsonReq(JSON.stringify({ ...e.base, n: 3 })));
add('n-huge', (e) => ['chat', 'images'].includes(e.name), (e) => jsonReq(withRaw(e, 'n', '4294967297')));
add('n-negative', (e) => ['chat', 'images'].includes(e.name), (e) => jsonReq(withRaw(e, 'n', '-2')), 400);
add('stream-string-true', (e) => generation(e) || e.name === 'speech' || e.name === 'images', (e) => jsonReq(withRaw(e, 'stream', '"true"')));
add('stream-number', (e) => generation(e), (e) => jsonReq(withRaw(e, 'stream', '1')));
add('stream-options-string', (e) => e.name === 'chat-stream', (e) => jsonReq(withRaw(e, 'stream_options', '"yes"')));
add('stream-options-include-string', (e) => e.name === 'chat-stream', (e) => jsonReq(withRaw(e, 'stream_options', '{"include_usage":"true"}')));

// ---- models ----
const MODEL_NAMES = {
  'model-unicode': '模型-éè-\u{1F600}',
  'model-slashes': 'a/b/c',
  'model-dotdot': '../../admin/tenants',
  'model-empty': '',
  'model-long': 'm'.repeat(5000),
  'model-nul': 'tollgate-echo\u0000',
  'model-spaces': '  tollgate-echo  ',
  'model-case': 'TOLLGATE-ECHO',
  'model-number': 7,
  'model-null': null,
  'model-object': { id: 'tollgate-echo' },
};
for (const [name, model] of Object.entries(MODEL_NAMES)) {
  add(name, (e) => isJson(e) && 'model' in e.base, (e) => jsonReq(JSON.stringify({ ...e.base, model })), [400, 403, 404]);
  add(`${name}-form`, (e) => isForm(e) && e.name !== 'image-variations', (e) => {
    const { body, contentType } = multipart({ ...e.base, fields: { ...e.base.fields, model: typeof model === 'string' ? model : JSON.stringify(model) } });
    return { headers: { 'content-type': contentType }, body };
  }, [400, 403, 404]);
}
add('model-missing', (e) => isJson(e) && 'model' in e.base, (e) => {
  const { model, ...rest } = e.base;
  return jsonReq(JSON.stringify(rest));
}, 400);
for (const [name, id] of Object.entries({ 'path-model-dotdot': '..%2F..%2Fadmin', 'path-model-unicode': '%E6%A8%A1%E5%9E%8B', 'path-model-bad-pct': '%ZZ', 'path-model-nul': 'echo%00' })) {
  add(name, (e) => e.name === 'model', () => ({ path: `/v1/models/${id}`, headers: {} }), [400, 404]);
}

// ---- conversation fields ----
for (const [name, content] of Object.entries(BAD_CONTENT)) {
  add(name, chatLike, (e) => jsonReq(JSON.stringify({ ...e.base, messages: [{ role: 'user', content }] })));
  add(`${name}-responses`, (e) => e.name.startsWith('responses'), (e) => jsonReq(JSON.stringify({ ...e.base, input: [{ role: 'user', content }] })));
}
add('messages-not-array', chatLike, (e) => jsonReq(JSON.stringify({ ...e.base, messages: 'hi' })), 400);
add('messages-empty', chatLike, (e) => jsonReq(JSON.stringify({ ...e.base, messages: [] })));
add('messages-null-item', chatLike, (e) => jsonReq(JSON.stringify({ ...e.base, messages: [null] })), 400);
add('message-role-bogus', chatLike, (e) => jsonReq(JSON.stringify({ ...e.base, messages: [{ role: 'overlord', content: 'x' }] })));
add('message-role-missing', chatLike, (e) => jsonReq(JSON.stringify({ ...e.base, messages: [{ content: 'x' }] })), 400);
add('message-role-number', chatLike, (e) => jsonReq(JSON.stringify({ ...e.base, messages: [{ role: 1, content: 'x' }] })), 400);
add('system-object', (e) => e.api === 'anthropic', (e) => jsonReq(JSON.stringify({ ...e.base, system: { text: 5 } })), 400);
add('system-bad-blocks', (e) => e.api === 'anthropic', (e) => jsonReq(JSON.stringify({ ...e.base, system: [{ type: 'image' }, 5] })));
add('input-number', (e) => e.name.startsWith('responses') || e.name === 'embeddings' || e.name === 'speech', (e) => jsonReq(JSON.stringify({ ...e.base, input: 12 })), 400);
add('input-nested-arrays', (e) => e.name === 'embeddings', (e) => jsonReq(JSON.stringify({ ...e.base, input: [[[1]], ['x']] })), 400);
add('input-empty-array', (e) => e.name === 'embeddings' || e.name.startsWith('responses'), (e) => jsonReq(JSON.stringify({ ...e.base, input: [] })));
add('input-token-ids-huge', (e) => e.name === 'embeddings', (e) => jsonReq(JSON.stringify({ ...e.base, input: [[1e30, -5, 2.5]] })), 400);
add('prompt-empty', (e) => e.name === 'images', (e) => jsonReq(JSON.stringify({ ...e.base, prompt: '' })));
add('image-size-garbage', (e) => e.name === 'images', (e) => jsonReq(JSON.stringify({ ...e.base, size: '99999999999x99999999999' })), 400);
add('voice-object', (e) => e.name === 'speech', (e) => jsonReq(JSON.stringify({ ...e.base, voice: { id: 1 } })));
add('speech-speed-1e400', (e) => e.name === 'speech', (e) => jsonReq(withRaw(e, 'speed', '1e400')), 400);
for (const [name, raw] of Object.entries(BAD_TOOLS)) {
  add(name, (e) => generation(e) || e.name === 'tokens' || e.name === 'count_tokens', (e) => jsonReq(raw === null ? withRaw(e, 'tool_choice', '{"type":"function","function":5}') : withRaw(e, 'tools', raw)));
}
add('response-format-garbage', (e) => ['chat', 'chat-stream', 'speech', 'images'].includes(e.name), (e) => jsonReq(withRaw(e, 'response_format', '{"type":{"nested":1}}')));
add('thinking-garbage', (e) => e.api === 'anthropic', (e) => jsonReq(withRaw(e, 'thinking', '{"type":"enabled","budget_tokens":-5}')));
add('metadata-huge', (e) => generation(e), (e) => jsonReq(withRaw(e, 'metadata', JSON.stringify(Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`k${i}`, 'v']))))));

// ---- content types and encodings ----
add('text-plain-json', isJson, (e, c) => jsonReq(validBody(e, c).body, 'text/plain'));
add('no-content-type', isJson, (e, c) => ({ headers: {}, body: validBody(e, c).body }));
add('form-urlencoded', isJson, () => jsonReq('model=tollgate-echo&messages=hi', 'application/x-www-form-urlencoded'), 400);
add('multipart-where-json', isJson, (e) => {
  const { body, contentType } = multipart({ fields: { model: 'tollgate-echo' } });
  return { headers: { 'content-type': contentType }, body };
}, 400);
add('gzip-body', hasBody, (e, c) => {
  const { body, contentType } = validBody(e, c);
  return { headers: { 'content-type': contentType, 'content-encoding': 'gzip' }, body: gzipSync(body) };
});
add('gzip-declared-plain-body', hasBody, (e, c) => {
  const { body, contentType } = validBody(e, c);
  return { headers: { 'content-type': contentType, 'content-encoding': 'gzip' }, body };
});
add('json-where-multipart', isForm, (e) => jsonReq(JSON.stringify(e.base.fields)), 415);
add('multipart-no-boundary', isForm, (e) => ({ headers: { 'content-type': 'multipart/form-data' }, body: multipart(e.base).body }), 400);
add('multipart-wrong-boundary', isForm, (e) => ({ headers: { 'content-type': 'multipart/form-data; boundary=other' }, body: multipart(e.base).body }), 400);
add('multipart-truncated', isForm, (e) => {
  const { body, contentType } = multipart(e.base);
  return { headers: { 'content-type': contentType }, body: body.subarray(0, body.length - 80) };
}, 400);
add('multipart-two-files', isForm, (e) => {
  const { body, contentType } = multipart({ ...e.base, files: [...e.base.files, ...e.base.files] });
  return { headers: { 'content-type': contentType }, body };
});
add('multipart-zero-byte-file', isForm, (e) => {
  const { body, contentType } = multipart({ ...e.base, files: e.base.files.map((f) => ({ ...f, data: Buffer.alloc(0) })) });
  return { headers: { 'content-type': contentType }, body };
}, [400, 404]);
add('multipart-no-file', isForm, (e) => {
  const { body, contentType } = multipart({ ...e.base, files: [] });
  return { headers: { 'content-type': contentType }, body };
}, [400, 404]);
add('multipart-duplicate-model', isForm, (e) => {
  const { body, contentType } = multipart(e.base);
  const extra = Buffer.from(`--heldoutBoundary7MA4YWxkTrZu0gW\r\ncontent-disposition: form-data; name="model"\r\n\r\n../../admin\r\n`);
  return { headers: { 'content-type': contentType }, body: Buffer.concat([extra, body]) };
});
add('multipart-garbage-headers', isForm, (e) => {
  const b = 'heldoutBoundary7MA4YWxkTrZu0gW';
  const body = Buffer.from(`--${b}\r\nno colon here\r\n\r\nvalue\r\n--${b}\r\ncontent-disposition: form-data\r\n\r\nx\r\n--${b}--\r\n`);
  return { headers: { 'content-type': `multipart/form-data; boundary=${b}` }, body };
}, [400, 404]);
add('multipart-number-fields', isForm, (e) => {
  const { body, contentType } = multipart({ ...e.base, fields: { ...e.base.fields, n: '1e400', temperature: 'NaN', response_format: '\u0000' } });
  return { headers: { 'content-type': contentType }, body };
});

// ---- headers ----
add('no-auth', (e) => !e.console, () => ({ headers: {}, auth: null }), 401);
add('bearer-lowercase', (e) => !e.console, () => ({ headers: {}, auth: 'lower' }));
add('bearer-two-spaces', (e) => !e.console, () => ({ headers: {}, auth: 'two-spaces' }));
add('bearer-trailing-space', (e) => !e.console, () => ({ headers: {}, auth: 'trailing' }));
add('x-api-key-only', (e) => !e.console, () => ({ headers: {}, auth: 'x-api-key' }));
add('auth-conflict-bad-x-api-key', (e) => !e.console, () => ({ headers: {}, auth: 'conflict-bad-x' }));
add('auth-conflict-bad-bearer', (e) => !e.console, () => ({ headers: {}, auth: 'conflict-bad-bearer' }), (e) => (e.api === 'anthropic' ? 'any' : 401));
add('auth-basic', (e) => !e.console, () => ({ headers: {}, auth: 'basic' }), 401);
add('auth-non-ascii', (e) => !e.console, () => ({ headers: {}, auth: 'latin1' }), 401);
add('auth-key-of-other-tenant-revoked', (e) => !e.console, () => ({ headers: {}, auth: 'revoked' }), 401);
add('header-64k', all, () => ({ headers: { 'x-junk': 'j'.repeat(64 * 1024) } }), 'runtime-or-any');
add('header-non-ascii-session', (e) => e.billed && !e.console, () => ({ headers: { 'x-session-id': 'caf\u00e9-\u00ff' } }), 400);
add('header-session-crlf-encoded', (e) => e.billed && !e.console, () => ({ headers: { 'x-session-id': 'a%0d%0aset-cookie:%20x=1' } }), 400);
add('header-idempotency-non-ascii', (e) => e.billed && !e.console, () => ({ headers: { 'idempotency-key': 'k\u00e9y' } }));
add('header-many', all, () => ({ headers: Object.fromEntries(Array.from({ length: 90 }, (_, i) => [`x-many-${i}`, String(i)])) }), 'runtime-or-any');
add('header-accept-xml', all, () => ({ headers: { accept: 'application/xml' } }));
add('console-cookie-garbage', (e) => e.session, () => ({ headers: { cookie: 'tg_session=%%%; tg_session=AAAA.BBBB; x=\u00ff' }, consoleSession: false }), 401);
add('console-no-origin', (e) => e.console && e.method === 'POST', () => ({ headers: { origin: 'https://evil.example' } }), 403);
add('console-bad-csrf', (e) => e.session && e.method === 'POST', () => ({ headers: { 'x-csrf-token': 'nope' } }), 403);

// ---- methods and paths ----
for (const m of ['PUT', 'DELETE', 'PATCH']) {
  add(`method-${m}`, (e) => !e.console && e.name !== 'image-variations', (e) => ({ method: m, headers: {} }), 405);
}
add('method-HEAD', (e) => !e.console && e.name !== 'image-variations' && e.method !== 'GET', () => ({ method: 'HEAD', headers: {} }), 405);
add('method-GET-on-POST', (e) => !e.console && e.method === 'POST' && e.name !== 'image-variations', () => ({ method: 'GET', headers: {} }), 405);
add('method-POST-on-GET', (e) => !e.console && e.method === 'GET', () => ({ method: 'POST', headers: {} }), 405);
// The runtime's `Method` reads an unknown method as GET: the gateway refuses it first.
add('method-unknown', all, () => ({ method: 'PROPFIND', headers: {} }), 'runtime-or-405');
add('cors-preflight', all, (e) => ({ method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': e.method, 'access-control-request-headers': 'authorization, content-type, x-api-key, anthropic-version' } }), 204);
add('path-trailing-slash', all, (e) => ({ path: `${e.path}/` }));
add('path-double-leading-slash', all, (e) => ({ path: `/${e.path}` }));
add('path-double-inner-slash', all, (e) => ({ path: e.path.replace('/v1/', '/v1//') }));
add('path-query-string', all, (e) => ({ path: `${e.path}?model=x&stream=true&a[]=1&%ZZ` }));
add('path-percent-encoded-slash', (e) => e.path.split('/').length > 3 && !e.path.startsWith('/v1/sessions/'), (e) => ({ path: e.path.replace(/\/([^/]+)$/, '%2F$1') }), 404);
// A session id in the path that cannot be one: a 400 naming the path's id, not the X-Session-Id header.
const badSession = { status: 400, param: 'session_id' };
add('path-session-id-encoded-slash', (e) => e.path.startsWith('/v1/sessions/'), (e) => ({ path: e.path.replace('sess-heldout', 'sess%2Fheldout') }), badSession);
add('path-session-id-unicode', (e) => e.path.startsWith('/v1/sessions/'), (e) => ({ path: e.path.replace('sess-heldout', '%E6%A8%A1') }), badSession);
add('path-percent-encoded-letter', all, (e) => ({ path: e.path.replace('/v1/', '/v%31/') }));
add('path-dot-segments', all, (e) => ({ path: e.path.replace('/v1/', '/v1/./x/../') }));
add('path-unknown-subroute', (e) => e.path === '/v1/messages' || e.path === '/v1/chat/completions', (e) => ({ path: `${e.path}/batches` }), 404);
add('path-uppercase', all, (e) => ({ path: e.path.toUpperCase() }), 404);
