// Smoke test: a gateway starts under wrangler dev, answers HTTP, and has its D1 schema applied.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startGateway } from './harness.mjs';

let gw;
before(async () => {
  gw = await startGateway();
});
after(async () => {
  await gw?.kill();
});

test('GET /healthz answers 200', async () => {
  const res = await fetch(`${gw.url}/healthz`);
  await res.arrayBuffer();
  assert.equal(res.status, 200);
});

test('D1 migrations are applied to the gateway state', () => {
  const migrations = gw.d1('SELECT name FROM d1_migrations ORDER BY id').map((r) => r.name);
  assert.ok(migrations.includes('0001_init.sql'), `applied: ${migrations.join(', ')}`);
  const echo = gw.d1('SELECT provider, input_price FROM models WHERE name = ?', 'tollgate-echo');
  assert.deepEqual(echo.map((r) => ({ ...r })), [{ provider: 'builtin', input_price: 1000000 }]);
});
