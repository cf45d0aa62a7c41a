// eventline drop-in components (docs/browser.md): <eventline-inbox> and
// <eventline-timeline>. Plain custom elements, no build step, served by
// eventline at /components/eventline.js. They talk to the eventline API
// this script was loaded from (or the api attribute) with a short-lived
// user token that the application's backend minted (POST /v1/user-tokens).
(() => {
  'use strict';
  if (customElements.get('eventline-inbox')) return;

  const scriptOrigin = (() => {
    try { return new URL(document.currentScript.src).origin; } catch { return location.origin; }
  })();

  // Shared look: every color, size and font is a CSS custom property the
  // page may set on the element or any ancestor.
  const baseCSS = `
    :host { --_accent: var(--eventline-accent, #0b57d0); --_bg: var(--eventline-bg, #fff); --_fg: var(--eventline-fg, #1f2328);
      --_muted: var(--eventline-muted, #59636e); --_border: var(--eventline-border, #d1d9e0); --_radius: var(--eventline-radius, 8px);
      --_unread: var(--eventline-unread-bg, #eef4ff); --_badge-bg: var(--eventline-badge-bg, #d1242f); --_badge-fg: var(--eventline-badge-fg, #fff);
      --_focus: var(--eventline-focus, var(--_accent));
      font: var(--eventline-font, 14px/1.4 -apple-system, 'Segoe UI', Roboto, sans-serif); color: var(--_fg); display: inline-block; position: relative; }
    *, *::before, *::after { box-sizing: border-box; }
    button { font: inherit; color: inherit; background: none; border: 0; cursor: pointer; padding: 0; }
    button:focus-visible, [tabindex]:focus-visible { outline: 2px solid var(--_focus); outline-offset: 2px; border-radius: 4px; }
    .link { color: var(--_accent); font-weight: 600; }
    .link:hover { text-decoration: underline; }
    .muted { color: var(--_muted); font-size: .86em; }
    .error { color: var(--_badge-bg); padding: 12px 16px; }
    .empty { color: var(--_muted); padding: 24px 16px; text-align: center; }
    em { font-style: normal; font-weight: 600; }
    .sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
  `;

  // tokenUser reads the user a token was minted for (the server checks the
  // signature; the page only needs to know which inbox to open).
  function tokenUser(token) {
    try {
      const body = token.slice(4, token.indexOf('.'));
      const json = atob(body.replace(/-/g, '+').replace(/_/g, '/'));
      return JSON.parse(json).u || '';
    } catch { return ''; }
  }

  function ago(iso) {
    const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
    if (s < 60) return 'just now';
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return new Date(iso).toLocaleDateString();
  }

  class Base extends HTMLElement {
    static get observedAttributes() { return ['token', 'api']; }
    constructor() {
      super();
      this.attachShadow({ mode: 'open' });
    }
    get api() { return (this.getAttribute('api') || scriptOrigin).replace(/\/$/, ''); }
    get token() { return this.getAttribute('token') || ''; }
    url(path, params = {}) {
      const u = new URL(this.api + path);
      for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, v);
      u.searchParams.set('token', this.token); // EventSource cannot send headers; eventline strips it before handlers and never logs it
      return u.toString();
    }
    async request(method, path, params) {
      const resp = await fetch(this.url(path, params), { method, credentials: 'omit' });
      let body = null;
      try { body = await resp.json(); } catch { /* empty */ }
      if (!resp.ok) {
        const err = new Error((body && body.detail) || `eventline answered ${resp.status}`);
        err.status = resp.status;
        if (resp.status === 401 || resp.status === 403) this.emit('eventline-unauthorized', { status: resp.status, detail: err.message });
        throw err;
      }
      return body;
    }
    emit(name, detail) { this.dispatchEvent(new CustomEvent(name, { detail, bubbles: true, composed: true })); }
    attributeChangedCallback(name, old, value) { if (old !== value && this.isConnected && this._started) this.restart(); }
    connectedCallback() { this._started = true; this.restart(); }
    disconnectedCallback() { this._started = false; this.stop(); }
  }

  // <eventline-inbox token="elu_…" [api="https://…"] [open]>: a bell with
  // the unread count, a panel listing the user's conversations (one
  // notification per group) newest first, mark read and mark all read,
  // live over Server-Sent Events.
  class Inbox extends Base {
    constructor() {
      super();
      this.shadowRoot.innerHTML = `<style>${baseCSS}
        .bell { position: relative; width: 40px; height: 40px; border-radius: 50%; display: grid; place-items: center; color: var(--_fg); }
        .bell:hover { background: var(--_unread); }
        .bell svg { width: 22px; height: 22px; }
        .badge { position: absolute; top: 2px; right: 0; min-width: 18px; height: 18px; padding: 0 5px; border-radius: 9px;
          background: var(--_badge-bg); color: var(--_badge-fg); font-size: 11px; font-weight: 700; line-height: 18px; text-align: center; }
        .badge[hidden] { display: none; }
        .panel { position: absolute; right: 0; top: 46px; width: var(--eventline-width, 380px); max-height: var(--eventline-height, 480px);
          display: flex; flex-direction: column; background: var(--_bg); border: 1px solid var(--_border); border-radius: var(--_radius);
          box-shadow: 0 8px 24px rgba(0,0,0,.12); z-index: var(--eventline-z, 1000); overflow: hidden; }
        .panel[hidden] { display: none; }
        header { display: flex; align-items: center; justify-content: space-between; padding: 12px 16px; border-bottom: 1px solid var(--_border); }
        h2 { font-size: 1em; margin: 0; }
        ul { list-style: none; margin: 0; padding: 0; overflow-y: auto; }
        li { display: flex; gap: 10px; padding: 12px 16px; border-bottom: 1px solid var(--_border); }
        li:last-child { border-bottom: 0; }
        li.unread { background: var(--_unread); }
        .dot { flex: none; width: 8px; height: 8px; margin-top: 6px; border-radius: 50%; background: transparent; }
        li.unread .dot { background: var(--_accent); }
        .body { flex: 1; min-width: 0; }
        .group { font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
        .count { margin-left: 6px; font-weight: 400; }
        .meta { display: flex; justify-content: space-between; align-items: center; margin-top: 4px; }
      </style>
      <button class="bell" part="bell" aria-haspopup="true" aria-expanded="false">
        <svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><path d="M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9"/><path d="M13.73 21a2 2 0 0 1-3.46 0"/></svg>
        <span class="badge" part="badge" hidden></span>
      </button>
      <span class="sr" role="status" aria-live="polite" aria-atomic="true"></span>
      <section class="panel" part="panel" role="region" aria-label="Notifications" hidden>
        <header><h2>Notifications</h2><button class="link all" part="mark-all">Mark all read</button></header>
        <div class="error" role="alert" hidden></div>
        <ul role="list" aria-label="Conversations"></ul>
        <div class="empty" hidden>You are all caught up.</div>
      </section>`;
      const $ = (s) => this.shadowRoot.querySelector(s);
      this.$bell = $('.bell'); this.$badge = $('.badge'); this.$status = $('.sr'); this.$panel = $('.panel');
      this.$list = $('ul'); this.$empty = $('.empty'); this.$error = $('.error'); this.$all = $('.all');
      this.unread = 0;
      this.$bell.addEventListener('click', () => this.toggle());
      this.$all.addEventListener('click', () => this.markAll());
      this.shadowRoot.addEventListener('keydown', (e) => {
        if (e.key === 'Escape' && !this.$panel.hidden) { e.stopPropagation(); this.toggle(false); this.$bell.focus(); }
      });
    }

    get user() { return this.getAttribute('user') || tokenUser(this.token); }

    toggle(open = this.$panel.hidden, focus = true) {
      this.$panel.hidden = !open;
      this.$bell.setAttribute('aria-expanded', String(open));
      if (open) {
        const focusFirst = () => { if (focus && !this.$panel.hidden) (this.$list.querySelector('button') || this.$all).focus(); };
        focusFirst();
        this.load().then(focusFirst, focusFirst);
      }
    }

    setUnread(n) {
      this.unread = n;
      this.$badge.hidden = n === 0;
      this.$badge.textContent = n > 99 ? '99+' : String(n);
      const label = n === 0 ? 'Notifications, none unread' : `Notifications, ${n} unread`;
      this.$bell.setAttribute('aria-label', label);
      this.$status.textContent = label;
      this.setAttribute('unread', String(n));
      this.emit('eventline-unread', { unread: n });
    }

    showError(msg) {
      this.$error.hidden = !msg;
      this.$error.textContent = msg || '';
      this.toggleAttribute('refused', !!msg);
    }

    stop() {
      if (this.source) this.source.close();
      this.source = null;
      clearTimeout(this.reloadTimer);
    }

    restart() {
      this.stop();
      if (this.hasAttribute('open')) this.toggle(true, false); // shown from the start: the page keeps its focus
      if (!this.token) { this.showError('No token: set the token attribute to a user token.'); return; }
      this.load().then(() => this.listen(), () => {});
    }

    async load() {
      const mine = (this.loads = (this.loads || 0) + 1);
      try {
        const page = await this.request('GET', `/v1/users/${encodeURIComponent(this.user)}/notifications`, { limit: this.getAttribute('limit') || 30 });
        if (mine !== this.loads) return; // a later load answers for the current state
        this.showError('');
        this.render(page.notifications);
        this.setUnread(page.unread_total);
      } catch (e) {
        this.showError(e.status === 401 ? 'Your session has expired. Reload the page to see notifications.' : e.message);
        throw e;
      }
    }

    listen() {
      const es = new EventSource(this.url(`/v1/users/${encodeURIComponent(this.user)}/notifications/stream`));
      this.source = es;
      const onChange = (ev) => {
        let c = {};
        try { c = JSON.parse(ev.data); } catch { return; }
        if (typeof c.unread_total === 'number') this.setUnread(c.unread_total);
        // The list shows sentences the server renders: fetch the first page again, at most every 250 ms.
        clearTimeout(this.reloadTimer);
        this.reloadTimer = setTimeout(() => this.load().catch(() => {}), ev.type === 'notification' ? 0 : 250);
        this.emit('eventline-change', c);
      };
      for (const kind of ['notification', 'read', 'read_all']) es.addEventListener(kind, onChange);
      es.onerror = () => {
        // EventSource retries by itself; a refused token closes it for good.
        if (es.readyState === EventSource.CLOSED) this.load().catch(() => {});
      };
    }

    render(items) {
      // Keep the keyboard where it was when the list is drawn again.
      const active = this.shadowRoot.activeElement;
      const keep = active && this.$list.contains(active) ? active.closest('li').dataset.id : null;
      this.$list.replaceChildren();
      this.$empty.hidden = items.length > 0;
      for (const n of items) {
        const li = document.createElement('li');
        li.className = n.read_at ? 'read' : 'unread';
        li.dataset.id = n.id;
        li.dataset.group = `${n.group.type}:${n.group.id}`;
        const dot = document.createElement('span');
        dot.className = 'dot';
        dot.setAttribute('aria-hidden', 'true');
        const body = document.createElement('div');
        body.className = 'body';
        const group = document.createElement('div');
        group.className = 'group';
        group.innerHTML = n.group_name ? n.group_name.html : ''; // escaped by eventline (internal/render)
        if (!n.read_at && n.unread_count > 0) {
          const count = document.createElement('span');
          count.className = 'count muted';
          count.textContent = `· ${n.unread_count} new`;
          group.append(count);
        }
        const sentence = document.createElement('div');
        sentence.className = 'sentence';
        sentence.innerHTML = n.sentence ? n.sentence.html : ''; // escaped by eventline (internal/render)
        const meta = document.createElement('div');
        meta.className = 'meta';
        const when = document.createElement('time');
        when.className = 'muted';
        when.dateTime = n.updated_at;
        when.textContent = ago(n.updated_at);
        meta.append(when);
        if (!n.read_at) {
          const b = document.createElement('button');
          b.className = 'link read-one';
          b.textContent = 'Mark read';
          b.setAttribute('aria-label', `Mark read: ${n.sentence ? n.sentence.text : n.group.id}`);
          b.addEventListener('click', () => this.markRead(n.id, li));
          meta.append(b);
        }
        body.append(group, sentence, meta);
        li.append(dot, body);
        this.$list.append(li);
        if (keep === n.id) (li.querySelector('button') || this.$all).focus();
      }
      if (keep && !this.shadowRoot.activeElement) this.$all.focus();
    }

    async markRead(id, li) {
      try {
        await this.request('POST', `/v1/users/${encodeURIComponent(this.user)}/notifications/${encodeURIComponent(id)}/read`);
        const next = li.nextElementSibling?.querySelector('button') || this.$all;
        await this.load();
        next.isConnected ? next.focus() : this.$all.focus();
      } catch (e) { this.showError(e.message); }
    }

    async markAll() {
      try {
        await this.request('POST', `/v1/users/${encodeURIComponent(this.user)}/notifications/read-all`);
        this.setUnread(0);
        await this.load();
      } catch (e) { this.showError(e.message); }
    }
  }

  // <eventline-timeline token="elu_…" type="board" id="b1" [api] [limit]
  // [poll="5000"]>: the activity of an object (its own events and those of
  // everything under it), newest first, with "Show older" paging and new
  // events added at the top as they are recorded (polled every poll ms).
  class Timeline extends Base {
    static get observedAttributes() { return ['token', 'api', 'type', 'id']; }
    constructor() {
      super();
      this.shadowRoot.innerHTML = `<style>${baseCSS}
        :host { display: block; }
        .wrap { background: var(--_bg); border: 1px solid var(--_border); border-radius: var(--_radius); }
        h2 { font-size: 1em; margin: 0; padding: 12px 16px; border-bottom: 1px solid var(--_border); }
        ol { list-style: none; margin: 0; padding: 0; }
        li { padding: 10px 16px; border-bottom: 1px solid var(--_border); display: flex; justify-content: space-between; gap: 12px; }
        li.new { animation: flash 1.2s ease-out; }
        @keyframes flash { from { background: var(--_unread); } to { background: transparent; } }
        .more { display: block; width: 100%; padding: 10px 16px; text-align: center; }
        .more[hidden] { display: none; }
        time { flex: none; }
      </style>
      <div class="wrap" part="timeline">
        <h2 part="title">Activity</h2>
        <div class="error" role="alert" hidden></div>
        <ol role="feed" aria-busy="true" aria-label="Activity"></ol>
        <div class="empty" hidden>No activity yet.</div>
        <button class="link more" part="more" hidden>Show older activity</button>
        <span class="sr" role="status" aria-live="polite"></span>
      </div>`;
      const $ = (s) => this.shadowRoot.querySelector(s);
      this.$list = $('ol'); this.$more = $('.more'); this.$error = $('.error'); this.$empty = $('.empty'); this.$status = $('.sr');
      this.$title = $('h2');
      this.$more.addEventListener('click', () => this.older());
    }

    get path() { return `/v1/timelines/${encodeURIComponent(this.getAttribute('type') || '')}/${encodeURIComponent(this.getAttribute('id') || '')}`; }

    stop() { clearInterval(this.timer); this.timer = null; }

    restart() {
      this.stop();
      this.seen = new Set();
      this.cursor = null;
      this.$list.replaceChildren();
      if (this.hasAttribute('heading')) this.$title.textContent = this.getAttribute('heading');
      this.page(null).then(() => {
        const every = Number(this.getAttribute('poll') || 5000);
        if (every > 0) this.timer = setInterval(() => this.newer(), every);
      }, () => {});
    }

    async fetchPage(cursor) {
      try {
        const page = await this.request('GET', this.path, { limit: this.getAttribute('limit') || 20, cursor, sentences: 'true' });
        this.$error.hidden = true;
        this.removeAttribute('refused');
        return page;
      } catch (e) {
        this.$error.hidden = false;
        this.$error.textContent = e.status === 401 ? 'Your session has expired. Reload the page to see the activity.' : e.message;
        this.toggleAttribute('refused', true);
        throw e;
      } finally {
        this.$list.setAttribute('aria-busy', 'false');
      }
    }

    item(e, sentences, fresh) {
      const li = document.createElement('li');
      li.dataset.id = e.id;
      li.tabIndex = 0;
      li.setAttribute('role', 'article');
      if (fresh) li.className = 'new';
      const s = document.createElement('span');
      s.innerHTML = sentences[e.id] ? sentences[e.id].html : ''; // escaped by eventline (internal/render)
      li.setAttribute('aria-label', sentences[e.id] ? sentences[e.id].text : e.type);
      const t = document.createElement('time');
      t.className = 'muted';
      t.dateTime = e.occurred_at;
      t.textContent = ago(e.occurred_at);
      li.append(s, t);
      return li;
    }

    async page(cursor) {
      const p = await this.fetchPage(cursor);
      for (const e of p.events) {
        if (this.seen.has(e.id)) continue;
        this.seen.add(e.id);
        this.$list.append(this.item(e, p.sentences || {}, false));
      }
      this.cursor = p.next_cursor;
      this.$more.hidden = !this.cursor;
      this.$empty.hidden = this.$list.children.length > 0;
      this.setAttribute('count', String(this.$list.children.length));
    }

    async older() {
      if (!this.cursor) return;
      const first = this.$list.children.length;
      await this.page(this.cursor).catch(() => {});
      const next = this.$list.children[first];
      (next || this.$more).focus();
    }

    async newer() {
      let p;
      try { p = await this.fetchPage(null); } catch { return; }
      const fresh = p.events.filter((e) => !this.seen.has(e.id));
      for (const e of fresh.reverse()) {
        this.seen.add(e.id);
        this.$list.prepend(this.item(e, p.sentences || {}, true));
      }
      if (fresh.length) {
        this.$status.textContent = `${fresh.length} new ${fresh.length === 1 ? 'event' : 'events'}`;
        this.$empty.hidden = true;
        this.setAttribute('count', String(this.$list.children.length));
        this.emit('eventline-change', { added: fresh.length });
      }
    }
  }

  customElements.define('eventline-inbox', Inbox);
  customElements.define('eventline-timeline', Timeline);
})();
