// The operator console (docs/operations.md "Operator console") in real
// Chromium. The test makes two real faults in the database eventline dev
// runs on: a constraint that refuses one card, so the projector
// dead-letters that event, and a lock that holds the projector back, so
// its lag grows. The operator logs in with the operator token, watches the
// lag, fixes nothing but replays the dead letter once the constraint is
// gone, sees the event reach the timeline and the lag return to zero.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { startDev, launchBrowser, screenshot, consoleErrors, poll } from './harness.js';

let dev, browser;

before(async () => {
  dev = await startDev();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await dev?.stop();
});

// sql runs statements in the dev database, in the current timeline
// generation's schema (timeline_g<N>) for {events}.
function sql(statement) {
  const wrapped = `DO $$ DECLARE g int; BEGIN SELECT generation INTO g FROM timeline.current;
    EXECUTE replace(${dollar(statement)}, '{events}', format('timeline_g%s.events', g)); END $$;`;
  execFileSync('psql', [dev.databaseURL, '-v', 'ON_ERROR_STOP=1', '-qc', wrapped], { stdio: ['ignore', 'ignore', 'inherit'] });
}
const dollar = (s) => `$q$${s}$q$`;

// holdLock opens a psql session that locks the timeline's events table
// against writes until release() commits.
async function holdLock() {
  const p = spawn('psql', [dev.databaseURL, '-v', 'ON_ERROR_STOP=1', '-q'], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  p.stdout.on('data', (b) => { out += b; });
  p.stdin.write(`BEGIN;
DO $$ DECLARE g int; BEGIN SELECT generation INTO g FROM timeline.current; EXECUTE format('LOCK TABLE timeline_g%s.events IN SHARE MODE', g); END $$;
SELECT 'locked';
`);
  await poll('the lock', 10_000, () => out.includes('locked'));
  return {
    release: () => new Promise((resolve) => { p.on('exit', resolve); p.stdin.end('COMMIT;\n'); }),
  };
}

const card = (id, action = 'published') => ({ action, eventable: { type: 'card', id }, creator: { type: 'user', id: 'u1' }, parents: [{ type: 'board', id: 'b1' }] });

test('an operator replays a dead letter and sees the lag return to zero', async () => {
  // A fault: Postgres refuses card c-poison, for good (a check violation),
  // so the projector dead-letters it and goes on.
  sql(`ALTER TABLE {events} ADD CONSTRAINT e2e_refuse_poison CHECK (eventable_id <> 'c-poison') NOT VALID`);
  const [poisoned] = (await dev.postEvents([card('c-poison')])).events;

  const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  const errors = consoleErrors(page);
  await page.goto(dev.url + '/console');
  // An API key is not the operator credential.
  await page.getByLabel('Operator token').fill(dev.key);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByText('that is not the operator token').waitFor();
  await page.getByLabel('Operator token').fill(dev.consoleToken);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  for (const s of ['ingest', 'projector', 'notifier', 'webhooker']) {
    await page.locator(`tr[data-service="${s}"] td.ok`).waitFor();
  }
  const projector = page.locator('tr[data-consumer="projector"]');
  await poll('the dead letter in the overview', 20_000, async () => (await projector.locator('td').nth(6).textContent()) === '1');

  // A second fault: the projector is held back by a lock while events
  // arrive; its lag shows.
  const lock = await holdLock();
  await dev.postEvents(Array.from({ length: 20 }, (_, i) => card(`c${i}`)));
  await poll('the projector\'s lag in the console', 20_000, async () => Number(await projector.locator('[data-lag]').getAttribute('data-lag')) >= 20);
  await screenshot(page, 'console-lag');

  // The fixes: the constraint goes, the lock is released.
  await lock.release();
  sql('ALTER TABLE {events} DROP CONSTRAINT e2e_refuse_poison');

  await page.getByRole('button', { name: 'Dead letters' }).click();
  const letter = page.locator(`tr[data-letter="projector:${poisoned.seq}"]`);
  await letter.getByText('e2e_refuse_poison').waitFor();
  await screenshot(page, 'console-dead-letters');
  await letter.getByRole('button', { name: 'Replay' }).click();
  await page.getByText(`Replayed projector seq ${poisoned.seq}.`).waitFor();
  await page.locator('#no-letters').waitFor();

  // The replayed event is in the card's timeline.
  await page.getByRole('button', { name: 'Timelines' }).click();
  await page.getByLabel('tenant').fill('dev');
  await page.getByLabel('object type').fill('card');
  await page.getByLabel('object id').fill('c-poison');
  await page.getByRole('button', { name: 'Show' }).click();
  await page.getByRole('cell', { name: 'card:c-poison' }).waitFor();

  // Back on the overview: every consumer is caught up, nothing is dead.
  await page.getByRole('button', { name: 'Overview' }).click();
  await poll('every consumer\'s lag back to zero', 30_000, async () => {
    const lags = await page.locator('[data-lag]').evaluateAll((ns) => ns.map((n) => Number(n.dataset.lag)));
    return lags.length === 3 && lags.every((l) => l === 0);
  });
  assert.equal(await projector.locator('td').nth(6).textContent(), '0');
  await screenshot(page, 'console');
  assert.deepEqual(errors.filter((e) => !e.includes('401')), [], 'the page ran clean (the refused login answers 401)');
  await page.close();
});
