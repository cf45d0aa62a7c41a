// The browser-test harness (docs/browser.md, make test-browser): it builds
// and starts `eventline dev` on free ports with a database and state of its
// own, mints API keys' tokens, serves test pages from another origin, and
// launches Debian's Chromium through playwright-core. Tests of every
// browser-facing part (the components, the portal, the console) use it.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, existsSync, rmSync, createWriteStream, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, after } from 'node:test';
import { chromium } from 'playwright-core';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const screenshotDir = join(root, 'docs', 'screenshots');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// poll calls fn until it returns a truthy value or timeoutMs passes.
export async function poll(what, timeoutMs, fn) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(50);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

// binary returns the eventline binary: $EVENTLINE_BIN, else bin/eventline
// built now when it is missing (make test-browser builds it first).
export function binary() {
  if (process.env.EVENTLINE_BIN) return process.env.EVENTLINE_BIN;
  const bin = join(root, 'bin', 'eventline');
  if (!existsSync(bin)) {
    execFileSync('go', ['build', '-o', bin, './cmd/eventline'], { cwd: root, stdio: 'inherit' });
  }
  return bin;
}

// startDev runs `eventline dev` on free loopback ports (never the default
// 8080/4222/4223) with a state directory and a Postgres database of its
// own, and resolves once /readyz answers 200. The result:
//   url                   the one public base URL
//   natsURL               its embedded NATS (producers connect with an API key)
//   key                   a key of tenant "dev" with every scope
//   databaseURL           its Postgres database (tests arrange faults with psql)
//   consoleToken          the operator token of its console (/console)
//   api(method, path, {key, body, headers})  -> {status, headers, body}
//   postEvents(events)    POST /v1/events with the dev key
//   mintToken(user, opts) POST /v1/user-tokens -> token
//   setOrigins(origins)   PUT /v1/browser-origins
//   stop()
export async function startDev({ args = [], env = {} } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'eventline-e2e-'));
  const db = `eventline_e2e_${process.pid}_${Date.now().toString(36)}`;
  const base = process.env.E2E_DATABASE_BASE || 'postgres://localhost:5432';
  const child = spawn(binary(), ['dev', '--dir', dir, '--http-addr', '127.0.0.1:0', '--nats-addr', '127.0.0.1:0', ...args], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: `${base}/${db}?sslmode=disable`, LOG_LEVEL: 'warn', CONSOLE_TOKEN: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = createWriteStream(join(dir, 'dev.log'));
  child.stderr.pipe(log);
  let out = '';
  child.stdout.on('data', (b) => { out += b; });
  let exited = null;
  child.on('exit', (code, signal) => { exited = { code, signal }; });
  const info = await poll('eventline dev to print its URL and key', 120_000, () => {
    if (exited) throw new Error(`eventline dev exited (${JSON.stringify(exited)}); its log: ${readFileSync(join(dir, 'dev.log'), 'utf8').slice(-2000)}\n${out}`);
    const url = out.match(/^\s+api\s+(http:\/\/\S+)/m);
    const nats = out.match(/^\s+nats\s+(nats:\/\/\S+)/m);
    const key = out.match(/^key for tenant "dev".*\n(el_\S+)$/m);
    return url && key && nats ? { url: url[1], natsURL: nats[1], key: key[1] } : null;
  });
  await poll('eventline dev to be ready', 60_000, async () => (await fetch(info.url + '/readyz')).ok);

  const databaseURL = `${base}/${db}?sslmode=disable`;
  const dev = {
    ...info,
    dir,
    databaseURL,
    consoleToken: readFileSync(join(dir, 'console.token'), 'utf8').trim(),
    async api(method, path, { key = info.key, body, headers = {} } = {}) {
      const h = { ...headers };
      if (key) h.Authorization = `Bearer ${key}`;
      if (body !== undefined) h['Content-Type'] = 'application/json';
      const resp = await fetch(info.url + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await resp.text();
      let parsed = text;
      try { parsed = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
      return { status: resp.status, headers: resp.headers, body: parsed };
    },
    async must(method, path, want, opts) {
      const r = await dev.api(method, path, opts);
      if (r.status !== want) throw new Error(`${method} ${path}: want ${want}, got ${r.status} ${JSON.stringify(r.body)}`);
      return r.body;
    },
    postEvents: (events) => dev.must('POST', '/v1/events', 202, { body: { events } }),
    async mintToken(user, { ttlSeconds, timelines } = {}) {
      const body = { user_id: user };
      if (ttlSeconds) body.ttl_seconds = ttlSeconds;
      if (timelines) body.timelines = timelines;
      return (await dev.must('POST', '/v1/user-tokens', 201, { body })).token;
    },
    setOrigins: (origins) => dev.must('PUT', '/v1/browser-origins', 200, { body: { origins } }),
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        await poll('eventline dev to stop', 40_000, () => exited);
      }
      log.end();
      try {
        execFileSync('dropdb', ['--if-exists', '-h', 'localhost', db], { stdio: 'ignore' });
      } catch { /* no dropdb here: the database stays */ }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return dev;
}

// servePages serves the given pages ({"/inbox.html": "<html>…"}, more
// with set(path, html)) from a loopback port of their own: another origin
// than eventline's, as an application's pages are.
export async function servePages(pages = {}) {
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    if (path === '/favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    const page = pages[path];
    if (page === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' }).end(page);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return {
    origin,
    url: (path) => origin + path,
    set: (path, html) => { pages[path] = html; },
    stop: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

// launchBrowser starts Chromium ($CHROMIUM, default Debian's
// /usr/bin/chromium: apt-get install -y chromium).
export async function launchBrowser() {
  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  if (!existsSync(executablePath)) {
    throw new Error(`no Chromium at ${executablePath}: apt-get install -y chromium, or set CHROMIUM to its path`);
  }
  return chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
}

// screenshot saves the page (or one element) as docs/screenshots/<name>.png.
export async function screenshot(target, name) {
  mkdirSync(screenshotDir, { recursive: true });
  await target.screenshot({ path: join(screenshotDir, `${name}.png`) });
}

// consoleErrors collects a page's console errors and uncaught exceptions,
// so a test can assert the page ran clean.
export function consoleErrors(page) {
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(e.message));
  return errors;
}

// useSetup registers node:test hooks that start eventline dev, a page
// server whose origin the dev tenant lists (PUT /v1/browser-origins) and
// Chromium before the file's tests, then runs prepare(ctx) if given, and
// stops them after. The returned object holds dev, pages and browser once
// the tests run.
export function useSetup(prepare) {
  const ctx = {};
  before(async () => {
    ctx.dev = await startDev();
    ctx.pages = await servePages();
    await ctx.dev.setOrigins([ctx.pages.origin]);
    ctx.browser = await launchBrowser();
    if (prepare) await prepare(ctx);
  });
  after(async () => {
    await ctx.browser?.close();
    await ctx.pages?.stop();
    await ctx.dev?.stop();
  });
  return ctx;
}
