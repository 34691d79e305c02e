// End to end: what the gateway counts before and during a call (issue 11 items 2, 4, 20).
//  - reasoning deltas are output: the stream guard cuts on them, a client leaving after them pays;
//  - images are priced into the reservation (402 where text alone passes), unpriceable parts 400;
//  - the echo model's bounds.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startGateway, startMockOpenAI } from './harness.mjs';

const PRICE_IN = 1_000_000; // micro-units per 1M prompt tokens: 1 per token
const PRICE_OUT = 2_000_000;
const costOf = (prompt, completion) => Math.ceil((prompt * PRICE_IN + completion * PRICE_OUT) / 1e6);

let gw;
let mock;
let key;

const bearer = (k) => ({ authorization: `Bearer ${k}`, 'content-type': 'application/json' });
const post = (k, body, init = {}) =>
  fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: bearer(k), body: JSON.stringify(body), ...init });

/** A mock behaviour streaming `reasoning` pieces as `reasoning_content`, then (unless `hang`) an answer. */
function reasoningStream(reasoning, { hang = false } = {}) {
  return async (record, res) => {
    const model = record.body?.model;
    const id = 'chatcmpl-reason';
    const created = Math.floor(Date.now() / 1000);
    const chunk = (delta, finish = null) =>
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(chunk({ role: 'assistant', content: '' }));
    for (const piece of reasoning) {
      if (res.destroyed) return true;
      res.write(chunk({ reasoning_content: piece }));
      await new Promise((r) => setTimeout(r, 10));
    }
    if (hang) {
      // Go on generating, slowly and without end, until the gateway goes away (a long answer).
      let closed = res.destroyed;
      res.on('close', () => (closed = true));
      while (!closed) {
        res.write(chunk({ content: ' more' }));
        await new Promise((r) => setTimeout(r, 300));
      }
      return true;
    }
    res.write(chunk({ content: 'Done.' }));
    res.write(chunk({}, 'stop'));
    res.end('data: [DONE]\n\n');
    return true;
  };
}

before(async () => {
  mock = await startMockOpenAI({ chunkDelayMs: 5 });
  gw = await startGateway({ vars: { PROVIDER_MOCK_KEY: 'sk-mock', CLIENT_ABORT_DRAIN_MS: '1500' } });
  await gw.adminOk('PUT', '/admin/providers/mock', { kind: 'openai', base_url: mock.url, api_key_secret: 'PROVIDER_MOCK_KEY' });
  await gw.adminOk('PUT', '/admin/models/reasoner', {
    provider: 'mock',
    upstream_model: 'gpt-4o-mini',
    input_price: PRICE_IN,
    output_price: PRICE_OUT,
    max_output_tokens: 1000,
  });
  ({ key } = await gw.newTenant({ name: 'rich', credit: 100_000_000 }));
});

after(async () => {
  await gw?.kill();
  await mock?.close();
});

describe('reasoning is output', () => {
  test('the stream guard cuts a capped stream on reasoning alone', async () => {
    mock.setBehavior(reasoningStream(Array.from({ length: 40 }, () => ' thinking')));
    try {
      const res = await post(key.key, {
        model: 'reasoner',
        stream: true,
        max_tokens: 5,
        messages: [{ role: 'user', content: 'think hard' }],
      });
      assert.equal(res.status, 200);
      const requestId = res.headers.get('x-request-id');
      const text = await res.text();
      const reasoningChunks = text.split('\n\n').filter((e) => e.includes('reasoning_content')).length;
      assert.ok(reasoningChunks <= 5, `forwarded ${reasoningChunks} reasoning chunks past a cap of 5 tokens`);
      assert.match(text, /"finish_reason":"length"/);
      assert.ok(!text.includes('Done.'));
      const row = await gw.usageRow(requestId);
      assert.equal(row.status, 'truncated');
      assert.equal(row.local_completion_tokens, reasoningChunks);
    } finally {
      mock.setBehavior(null);
    }
  });

  test('a client that leaves after the reasoning pays for it: the provider still generating at the drain deadline is charged the reservation', async () => {
    mock.setBehavior(reasoningStream([' First', ',', ' the', ' premise', '.', ' Then'], { hang: true }));
    try {
      const controller = new AbortController();
      const res = await post(
        key.key,
        { model: 'reasoner', stream: true, messages: [{ role: 'user', content: 'think hard' }] },
        { signal: controller.signal },
      );
      assert.equal(res.status, 200);
      const requestId = res.headers.get('x-request-id');
      const reader = res.body.getReader();
      let received = '';
      while (!received.includes('" premise"')) {
        const { value, done } = await reader.read();
        if (done) break;
        received += Buffer.from(value).toString();
      }
      controller.abort();
      const row = await gw.usageRow(requestId);
      assert.equal(row.status, 'client_abort');
      assert.equal(row.usage_source, 'local');
      assert.ok(row.completion_tokens >= 4, `billed ${row.completion_tokens} completion tokens`);
      // The provider is still generating when the drain ends: the reservation is charged
      // (docs/money.md, "How a request ends").
      assert.equal(row.error_code, 'drain_deadline');
      assert.equal(row.cost, row.reserved);
      assert.ok(row.cost > costOf(row.prompt_tokens, 0));
    } finally {
      mock.setBehavior(null);
    }
  });
});

describe('non-text parts are priced before the call', () => {
  const image = (detail) => ({ type: 'image_url', image_url: { url: 'https://example.com/cat.png', detail } });
  const withParts = (...parts) => ({
    model: 'tollgate-echo',
    max_tokens: 10,
    messages: [{ role: 'user', content: [{ type: 'text', text: 'what is this?' }, ...parts] }],
  });

  test('an image reserves its worst case: 402 on a balance where text alone passes', async () => {
    // The echo model prices like gpt-4o: a high-detail image of unknown size is 85 + 8 × 170
    // tokens, 1,445 micro-units at 1.00 per 1M; the text request costs a few dozen.
    const poor = await gw.newTenant({ name: 'poor', credit: 1_000 });
    const text = await post(poor.key.key, withParts());
    assert.equal(text.status, 200, await text.clone().text());
    const textRow = await gw.usageRow(text.headers.get('x-request-id'));

    const high = await post(poor.key.key, withParts(image('high')));
    assert.equal(high.status, 402);
    assert.equal((await high.json()).error.code, 'insufficient_quota');

    const low = await post(poor.key.key, withParts(image('low')));
    assert.equal(low.status, 200, await low.clone().text());
    const lowRow = await gw.usageRow(low.headers.get('x-request-id'));
    // Same text, plus 85 tokens for the low-detail image.
    assert.equal(lowRow.local_prompt_tokens, textRow.local_prompt_tokens + 85);
    assert.equal(lowRow.reserved, textRow.reserved + 85);
  });

  test('parts that cannot be priced are refused with 400 and param', async () => {
    for (const [part, param] of [
      [{ type: 'video_url', video_url: { url: 'https://example.com/v.mp4' } }, 'messages[0].content[1].type'],
      [{ type: 'file', file: { file_id: 'file-abc' } }, 'messages[0].content[1].file'],
    ]) {
      const res = await post(key.key, withParts(part));
      const body = await res.json();
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(body.error.type, 'invalid_request_error');
      assert.equal(body.error.param, param);
    }
  });
});

describe('the echo model is bounded', () => {
  const hello = [{ role: 'user', content: 'hello' }];

  test('n above 4 and caps above 4096 are 400s naming the field', async () => {
    for (const [extra, param] of [
      [{ n: 5 }, 'n'],
      [{ max_tokens: 4097 }, 'max_tokens'],
      [{ max_completion_tokens: 500_000, stream: true }, 'max_completion_tokens'],
    ]) {
      const res = await post(key.key, { model: 'tollgate-echo', messages: hello, ...extra });
      const body = await res.json();
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(body.error.param, param);
    }
  });

  test('a stream within the bounds streams every choice', async () => {
    const res = await post(key.key, { model: 'tollgate-echo', messages: hello, n: 4, stream: true, max_tokens: 4096 });
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.ok(text.trimEnd().endsWith('data: [DONE]'));
    const replies = ['', '', '', ''];
    for (const event of text.split('\n\n')) {
      const data = event.replace(/^data: /, '');
      if (!data.startsWith('{')) continue;
      for (const c of JSON.parse(data).choices) replies[c.index] += c.delta?.content ?? '';
    }
    assert.deepEqual(replies, Array(4).fill('Echo: hello'));
  });
});
