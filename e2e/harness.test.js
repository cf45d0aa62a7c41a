// The harness itself in a real browser: a page on another origin reads a
// user's inbox with a user token (CORS from the tenant's listed origin),
// and cannot read it from an origin the tenant did not list.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDev, servePages, launchBrowser } from './harness.js';

let dev, pages, browser;

before(async () => {
  dev = await startDev();
  pages = await servePages({ '/blank.html': '<!doctype html><title>blank</title>' });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await pages?.stop();
  await dev?.stop();
});

async function fetchInbox(token, user) {
  const page = await browser.newPage();
  try {
    await page.goto(pages.url('/blank.html'));
    return await page.evaluate(async ([url, token, user]) => {
      try {
        const r = await fetch(`${url}/v1/users/${user}/notifications?token=${encodeURIComponent(token)}`);
        return { status: r.status, body: await r.json() };
      } catch (e) {
        return { error: String(e) };
      }
    }, [dev.url, token, user]);
  } finally {
    await page.close();
  }
}

test('a listed origin reads the inbox with a user token; another user is refused', async () => {
  await dev.setOrigins([pages.origin]);
  const token = await dev.mintToken('u1');
  const own = await fetchInbox(token, 'u1');
  assert.equal(own.status, 200, JSON.stringify(own));
  assert.ok(Array.isArray(own.body.notifications));
  const other = await fetchInbox(token, 'u2');
  assert.equal(other.status, 403, JSON.stringify(other));
  assert.match(other.body.detail, /another user/);
});

test('an origin the tenant did not list cannot read the answer', async () => {
  await dev.setOrigins(['https://somewhere-else.example']);
  const token = await dev.mintToken('u1');
  // CORS caches are per origin list for a few seconds on the server.
  let r;
  for (let i = 0; i < 100; i++) {
    r = await fetchInbox(token, 'u1');
    if (r.error) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.match(r.error ?? '', /Failed to fetch/, JSON.stringify(r));
});
