// The harness itself in a real browser: a page on another origin reads a
// user's inbox with a user token (CORS from the tenant's listed origin),
// and cannot read it from an origin the tenant did not list.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useSetup } from './harness.js';

const ctx = useSetup(({ pages }) => pages.set('/blank.html', '<!doctype html><title>blank</title>'));

async function fetchInbox(token, user) {
  const page = await ctx.browser.newPage();
  try {
    await page.goto(ctx.pages.url('/blank.html'));
    return await page.evaluate(async ([url, token, user]) => {
      try {
        const r = await fetch(`${url}/v1/users/${user}/notifications?token=${encodeURIComponent(token)}`);
        return { status: r.status, body: await r.json() };
      } catch (e) {
        return { error: String(e) };
      }
    }, [ctx.dev.url, token, user]);
  } finally {
    await page.close();
  }
}

test('a listed origin reads the inbox with a user token; another user is refused', async () => {
  await ctx.dev.setOrigins([ctx.pages.origin]);
  const token = await ctx.dev.mintToken('u1');
  const own = await fetchInbox(token, 'u1');
  assert.equal(own.status, 200, JSON.stringify(own));
  assert.ok(Array.isArray(own.body.notifications));
  const other = await fetchInbox(token, 'u2');
  assert.equal(other.status, 403, JSON.stringify(other));
  assert.match(other.body.detail, /another user/);
});

test('an origin the tenant did not list cannot read the answer', async () => {
  await ctx.dev.setOrigins(['https://somewhere-else.example']);
  const token = await ctx.dev.mintToken('u1');
  // CORS caches are per origin list for a few seconds on the server.
  let r;
  for (let i = 0; i < 100; i++) {
    r = await fetchInbox(token, 'u1');
    if (r.error) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.match(r.error ?? '', /Failed to fetch/, JSON.stringify(r));
});

test('a token in the Authorization header passes the browser\'s CORS preflight from a listed origin', async () => {
  await ctx.dev.setOrigins([ctx.pages.origin]);
  const token = await ctx.dev.mintToken('u1');
  const page = await ctx.browser.newPage();
  try {
    await page.goto(ctx.pages.url('/blank.html'));
    const r = await page.evaluate(async ([url, token]) => {
      const resp = await fetch(`${url}/v1/users/u1/notifications/read-all`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
      return { status: resp.status, body: await resp.json() };
    }, [ctx.dev.url, token]);
    assert.equal(r.status, 200, JSON.stringify(r));
    assert.equal(r.body.unread_total, 0);
  } finally {
    await page.close();
  }
});
