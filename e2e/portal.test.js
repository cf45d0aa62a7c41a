// The tenant webhook portal (docs/portal.md) in real Chromium, embedded in
// an iframe of another origin as an application embeds it: an admin
// creates an endpoint (a local receiver run by this test), sends a test
// event, sees the delivery with its HTTP status and retries it; the
// receiver gets both attempts, signed with the secret the portal showed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createHmac } from 'node:crypto';
import { startDev, servePages, launchBrowser, screenshot, consoleErrors, poll } from './harness.js';

let dev, pages, browser, receiver;
const received = [];

before(async () => {
  dev = await startDev();
  pages = await servePages({ '/settings.html': '<!doctype html><link rel="icon" href="data:,"><title>Acme settings</title><h1>Acme · Settings</h1><div id="slot"></div>' });
  browser = await launchBrowser();
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      received.push({ headers: req.headers, body });
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end('thanks');
    });
  });
  await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
});

after(async () => {
  await browser?.close();
  await pages?.stop();
  await new Promise((r) => (receiver ? receiver.close(r) : r()));
  await dev?.stop();
});

// verify checks a Standard Webhooks signature (docs/contract.md §3).
function verify(secret, { headers, body }) {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const want = createHmac('sha256', key).update(`${headers['webhook-id']}.${headers['webhook-timestamp']}.${body}`).digest('base64');
  return headers['webhook-signature'].split(' ').includes(`v1,${want}`);
}

test('an admin creates an endpoint, sends a test event, sees the delivery and retries it', async () => {
  const minted = await dev.must('POST', '/v1/portal-tokens', 201, { body: { ttl_seconds: 600 } });
  assert.match(minted.url, /\/portal#token=elp_/);
  const page = await browser.newPage({ viewport: { width: 1280, height: 980 } });
  const errors = consoleErrors(page);
  await page.goto(pages.url('/settings.html'));
  // The application's page embeds the portal with the URL its backend got.
  await page.evaluate((src) => {
    const f = document.createElement('iframe');
    f.src = src;
    f.title = 'Webhooks';
    f.style = 'width:100%;height:880px;border:0';
    document.getElementById('slot').append(f);
  }, minted.url);
  const portal = page.frameLocator('iframe[title=Webhooks]');

  await portal.getByRole('button', { name: 'Add endpoint' }).click();
  const receiverURL = `http://127.0.0.1:${receiver.address().port}/hooks`;
  await portal.getByLabel('URL').fill(receiverURL);
  await portal.getByLabel('Events').first().fill('card.*, comment.created');
  await portal.getByLabel('Description').fill('Acme CRM sync');
  await portal.getByRole('button', { name: 'Create' }).click();
  const secret = (await portal.locator('#secret').textContent()).trim();
  assert.match(secret, /^whsec_/);
  await portal.getByRole('button', { name: receiverURL }).waitFor();

  await portal.getByRole('button', { name: 'Send test event' }).click();
  const row = portal.locator('tr[data-event-type="webhook.test"]');
  await row.locator('[data-status-code="200"]').first().waitFor({ timeout: 15_000 });
  await row.locator('.badge.succeeded').waitFor();
  assert.equal(received.length, 1);
  assert.ok(verify(secret, received[0]), 'the test delivery is signed with the secret the portal showed');
  const event = JSON.parse(received[0].body);
  assert.equal(event.type, 'webhook.test');

  await row.getByRole('button', { name: 'Retry' }).click();
  await poll('the retried attempt in the portal', 15_000, async () => (await row.locator('[data-status-code="200"]').count()) === 2);
  assert.equal(received.length, 2);
  assert.equal(received[1].headers['webhook-id'], received[0].headers['webhook-id'], 'a retry keeps the webhook-id');
  assert.ok(verify(secret, received[1]));

  // Replay the last hour: the endpoint's matching events (none here but
  // the test event, which only the test button sends) are scheduled again.
  await portal.getByRole('button', { name: 'Replay' }).click();
  await portal.getByText('0 deliveries scheduled.').waitFor();

  await screenshot(page, 'portal');
  assert.deepEqual(errors, []);
  await page.close();
});

test('the portal without a valid token asks for a new link', async () => {
  const page = await browser.newPage();
  const minted = await dev.must('POST', '/v1/portal-tokens', 201);
  const tampered = minted.url.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'));
  await page.goto(tampered);
  await page.getByRole('heading', { name: 'This page needs a portal link' }).waitFor();
  // The token left the address bar as soon as the page read it.
  assert.ok(!page.url().includes('token='), page.url());
  await page.close();
});
