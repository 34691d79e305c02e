// The official OpenAI Python SDK against the built worker: plain, streamed, models and errors.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { ROOT, startGateway } from './harness.mjs';

const python = join(ROOT, '.tools', 'py', 'bin', 'python');
let gw;

before(async () => {
  gw = await startGateway();
});
after(async () => {
  await gw?.kill();
});

test('openai (Python) works against the gateway unchanged', async () => {
  assert.ok(existsSync(python), 'run scripts/setup.sh first: .tools/py is missing');
  const t = await gw.admin('POST', '/admin/tenants', { name: 'py', credit: 1_000_000 });
  const k = await gw.admin('POST', `/admin/tenants/${t.json.id}/keys`, { name: 'py' });
  const { stdout } = await promisify(execFile)(
    python,
    [join(ROOT, 'tests', 'e2e', 'python_sdk_check.py'), `${gw.url}/v1`, k.json.key],
    { timeout: 60_000 },
  );
  const seen = JSON.parse(stdout.trim().split('\n').pop());
  assert.ok(seen.stream_pieces >= 5);
  const row = await gw.admin('GET', `/admin/requests/${seen.plain_request_id}`);
  // settlement is asynchronous; the row appears shortly after the response
  for (let i = 0; i < 50 && row.status !== 200; i++) {
    await new Promise((r) => setTimeout(r, 100));
    Object.assign(row, await gw.admin('GET', `/admin/requests/${seen.plain_request_id}`));
  }
  assert.equal(row.status, 200);
  assert.equal(row.json.status, 'ok');
});
