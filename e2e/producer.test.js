// A non-Go producer: Node.js with the npm "nats" package publishes to
// eventline's NATS with a tenant's API key (the auth callout), as
// docs/publishing-from-any-language.md describes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { connect, ErrorCode } from 'nats';
import { startDev, poll, binary } from './harness.js';
import { publishEvent } from './publish.mjs';

let dev;
let receiver;
const deliveries = [];

before(async () => {
  dev = await startDev();
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => { deliveries.push({ headers: req.headers, body }); res.writeHead(204).end(); });
  });
  await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
});

after(async () => {
  receiver?.close();
  await dev?.stop();
});

// verifySignature checks a Standard Webhooks v1 signature with node:crypto.
function verifySignature(secret, headers, body) {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const want = createHmac('sha256', key).update(`${headers['webhook-id']}.${headers['webhook-timestamp']}.${body}`).digest();
  return headers['webhook-signature'].split(' ').some((s) => {
    const [v, sig] = s.split(',');
    const got = Buffer.from(sig ?? '', 'base64');
    return v === 'v1' && got.length === want.length && timingSafeEqual(got, want);
  });
}

// violations collects the server's permission errors on a connection.
function violations(nc) {
  const seen = [];
  (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'error' && s.permissionContext) seen.push(s.permissionContext.subject);
    }
  })();
  return seen;
}

test('a valid event published over NATS reaches the timeline and a signed webhook', async () => {
  const endpoint = await dev.must('POST', '/v1/webhooks', 201, { body: { url: `http://127.0.0.1:${receiver.address().port}/hook`, events: ['card.*'] } });
  // The webhooker knows the endpoint once a probe reaches it.
  let n = 0;
  await poll('a probe to reach the endpoint', 30_000, async () => {
    const id = `probe-${++n}`;
    await dev.postEvents([{ id, action: 'probed', eventable: { type: 'card', id }, creator: { type: 'user', id: 'probe' } }]);
    await new Promise((r) => setTimeout(r, 500));
    return deliveries.some((d) => d.headers['webhook-id'] === id);
  });

  const event = {
    id: 'node-1', action: 'published',
    eventable: { type: 'card', id: 'n1' }, creator: { type: 'user', id: 'ana' },
    parents: [{ type: 'board', id: 'node-board' }], particulars: { title: 'From Node' },
  };
  const ack = await publishEvent({ servers: dev.natsURL, key: dev.key, tenant: 'dev', event });
  assert.equal(ack.stream, 'EVENTS');
  assert.ok(ack.seq > 0);
  assert.equal(ack.duplicate, false);
  const again = await publishEvent({ servers: dev.natsURL, key: dev.key, tenant: 'dev', event });
  assert.equal(again.duplicate, true, 're-sending the id is de-duplicated');
  assert.equal(again.seq, ack.seq);

  await poll('the event in the board timeline', 20_000, async () => {
    const r = await dev.api('GET', '/v1/timelines/board/node-board');
    return r.status === 200 && r.body.events?.some((e) => e.id === 'node-1' && e.type === 'card.published');
  });
  const delivery = await poll('the webhook delivery', 20_000, () => deliveries.find((d) => d.headers['webhook-id'] === 'node-1'));
  assert.ok(verifySignature(endpoint.secret, delivery.headers, delivery.body), 'the delivery is signed with the endpoint secret');
  assert.equal(JSON.parse(delivery.body).particulars.title, 'From Node');
});

test('an invalid event shows up in GET /v1/rejected-events with its field error', async () => {
  const event = { id: 'node-bad-1', action: 'Closed!', eventable: { type: 'card', id: 'n2' }, creator: { type: 'user', id: 'ana' } };
  const ack = await publishEvent({ servers: dev.natsURL, key: dev.key, tenant: 'dev', event });
  assert.ok(ack.seq > 0, 'the stream stores it; eventline rejects it');
  const rejected = await poll('the rejection', 20_000, async () => {
    const r = await dev.api('GET', '/v1/rejected-events');
    return r.status === 200 && r.body.rejected_events?.find((x) => x.id === 'node-bad-1');
  });
  assert.ok(JSON.stringify(rejected.errors).includes('action'), JSON.stringify(rejected));
});

test("another tenant's subjects and the stream's API are refused by the server", async () => {
  const nc = await connect({ servers: dev.natsURL, token: dev.key, inboxPrefix: '_INBOX.dev' });
  const seen = violations(nc);
  nc.publish('events.other.card.published', JSON.stringify({ id: 'x' }));
  const refused = (err) => err.code === 'PERMISSIONS_VIOLATION';
  await assert.rejects(nc.request('$JS.API.STREAM.DELETE.EVENTS', '', { timeout: 2000 }), refused);
  await assert.rejects(nc.request('$JS.API.CONSUMER.DELETE.EVENTS.projector', '', { timeout: 2000 }), refused);
  await poll('the server to refuse all three', 10_000, () =>
    ['events.other.card.published', '$JS.API.STREAM.DELETE.EVENTS', '$JS.API.CONSUMER.DELETE.EVENTS.projector'].every((s) => seen.includes(s)));
  await nc.close();
  // The stream is still there: an append over HTTP succeeds.
  await dev.postEvents([{ id: 'after-refusals', action: 'published', eventable: { type: 'card', id: 'n3' }, creator: { type: 'user', id: 'ana' } }]);
});

test('a revoked key cannot connect, and its open connection is closed', async () => {
  const env = { ...process.env, DATABASE_URL: dev.databaseURL };
  const out = execFileSync(binary(), ['keys', 'create', '--tenant', 'dev', '--scopes', 'ingest'], { env }).toString().trim().split('\n');
  const key = out[out.length - 1];
  const nc = await connect({ servers: dev.natsURL, token: key, inboxPrefix: '_INBOX.dev', reconnect: false });
  const id = key.slice(3, 19);
  execFileSync(binary(), ['keys', 'revoke', id], { env });
  // Within 30 s, as over HTTP: the open connection is closed by the
  // callout's sweep, and new ones are refused once the key cache expires.
  await poll('the revoked key\'s connection to close', 40_000, () => nc.isClosed());
  await poll('new connections with the revoked key to be refused', 40_000, async () => {
    try {
      const again = await connect({ servers: dev.natsURL, token: key, inboxPrefix: '_INBOX.dev', reconnect: false });
      await again.close();
      return false;
    } catch (err) {
      assert.ok(err.code === ErrorCode.AuthorizationViolation || /Authorization/i.test(String(err)), String(err));
      return true;
    }
  });
});
