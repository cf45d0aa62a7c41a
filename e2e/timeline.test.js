// <eventline-timeline> in real Chromium on a page of another origin: it
// pages through a board's activity and shows new events as they are
// recorded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useSetup, screenshot, consoleErrors, poll } from './harness.js';

const ctx = useSetup();
let seq = 0;

const titles = ['Export timelines as CSV', 'Slow inbox on mobile', 'Rename boards', 'Dark mode for digests', 'Keyboard shortcuts', 'Card templates', 'Search across boards'];
const who = ['ana', 'ben', 'chloe', 'dev'];

// activity returns n events on board b1, oldest first, a minute apart.
function activity(n, { board = 'b1', start = Date.now() - 3600_000 } = {}) {
  return Array.from({ length: n }, (_, i) => {
    seq += 1;
    const title = titles[seq % titles.length];
    const kinds = [
      { action: 'published', particulars: { title, column: 'Triage' } },
      { action: 'moved', particulars: { title, from_column: 'Triage', to_column: 'Doing' } },
      { action: 'assigned', particulars: { title, assignee_ids: [who[(seq + 1) % who.length]] } },
      { action: 'closed', particulars: { title, column: 'Done' } },
    ];
    const k = kinds[seq % kinds.length];
    return { id: `e2e-tl-${process.pid}-${seq}`, action: k.action, eventable: { type: 'card', id: `c${seq}` },
      creator: { type: 'user', id: who[seq % who.length] }, parents: [{ type: 'board', id: board }], particulars: k.particulars,
      occurred_at: new Date(start + i * 60_000).toISOString() };
  });
}

const state = (page) => page.evaluate(() => {
  const root = document.querySelector('eventline-timeline').shadowRoot;
  return {
    items: [...root.querySelectorAll('li')].map((li) => li.querySelector('span').textContent),
    more: !root.querySelector('.more').hidden,
    error: root.querySelector('.error').hidden ? '' : root.querySelector('.error').textContent,
  };
});

test('the timeline pages through a board and updates live', async () => {
  await ctx.dev.postEvents(activity(8));
  await ctx.dev.postEvents(activity(2, { board: 'b2' })); // another board: never shown
  await poll('the projection of the 8 events', 20_000, async () => (await ctx.dev.must('GET', '/v1/timelines/board/b1', 200)).events.length === 8);
  const token = await ctx.dev.mintToken('u1', { timelines: [{ type: 'board', id: 'b1' }] });
  ctx.pages.set('/timeline.html', `<!doctype html><html><head><meta charset="utf-8"><title>timeline</title>
<style>body { font-family: sans-serif; background: #f6f7f9; margin: 0; padding: 24px; } main { max-width: 640px; }</style></head>
<body><main>
<script src="${ctx.dev.url}/components/eventline.js"></script>
<eventline-timeline token="${token}" type="board" id="b1" limit="5" poll="300" heading="Board activity"></eventline-timeline>
</main></body></html>`);
  const page = await ctx.browser.newPage({ viewport: { width: 700, height: 560 } });
  const errors = consoleErrors(page);
  await page.goto(ctx.pages.url('/timeline.html'));
  await page.waitForFunction(() => document.querySelector('eventline-timeline').getAttribute('count') === '5');
  let s = await state(page);
  assert.equal(s.items.length, 5);
  assert.ok(s.more, 'a next page is offered');
  assert.match(s.items[0], /^(ana|ben|chloe|dev) (published card|moved|assigned|closed) /);

  // The keyboard pages: Tab to "Show older", Enter.
  await page.evaluate(() => document.querySelector('eventline-timeline').shadowRoot.querySelector('.more').focus());
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelector('eventline-timeline').getAttribute('count') === '8');
  s = await state(page);
  assert.equal(s.more, false, 'the last page');
  assert.equal(new Set(s.items).size >= 7, true, 'each event once');

  // Live: a new event shows at the top.
  const [fresh] = activity(1, { start: Date.now() });
  fresh.action = 'moved';
  fresh.particulars = { title: 'Fix login', from_column: 'Review', to_column: 'Done' };
  await ctx.dev.postEvents([fresh]);
  await page.waitForFunction(() => document.querySelector('eventline-timeline').getAttribute('count') === '9', null, { timeout: 15_000 });
  s = await state(page);
  assert.equal(s.items[0], `${fresh.creator.id} moved Fix login to Done`);
  await screenshot(page, 'timeline');
  assert.deepEqual(errors, []);

  // The token lists b1 only.
  const other = await page.evaluate(async ([url, token]) => (await fetch(`${url}/v1/timelines/board/b2?token=${encodeURIComponent(token)}`)).status, [ctx.dev.url, token]);
  assert.equal(other, 403);
  await page.close();
});
