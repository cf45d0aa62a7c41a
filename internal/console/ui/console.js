// The eventline operator console (docs/operations.md "Operator console").
// Plain DOM, no framework, no build step; data is inserted as text only.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const state = { tab: "overview", timer: 0 };

  const { el, when, notice } = window.eventline;
  const table = (head, rows) => el("table", {}, el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))), el("tbody", {}, rows));


  async function api(method, path, body) {
    const res = await fetch("/console/api/" + path, {
      method, credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: body ? JSON.stringify(body) : (method === "GET" ? undefined : "{}"),
    });
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (res.status === 401 && path !== "login") { showLogin(); throw new Error("log in again"); }
    if (!res.ok) throw new Error((data && data.detail) || res.statusText);
    return data;
  }

  function showLogin() {
    clearInterval(state.timer);
    $("login").hidden = false;
    $("tabs").hidden = true;
    $("logout").hidden = true;
    $("view").replaceChildren();
    $("login-form").token.focus();
  }

  function showApp() {
    $("login").hidden = true;
    $("tabs").hidden = false;
    $("logout").hidden = false;
    open(state.tab);
  }

  const views = {
    async overview() {
      const o = await api("GET", "overview");
      const s = o.stream;
      return [
        el("h1", {}, "Overview"),
        o.stream_error ? el("p", { class: "bad" }, "Stream: " + o.stream_error) : null,
        s ? el("div", { class: "cards" },
          card("Stream " + s.name, s.messages, "messages · last seq " + s.last_seq),
          card("Last event", when(s.last_time) || "never", (s.bytes / 1048576).toFixed(1) + " MiB · R" + s.replicas),
          card("Dead letters", o.consumers.reduce((n, c) => n + c.dead_letters, 0), "pending replay"),
          card("Rejected", o.rejected.reduce((n, t) => n + t.pending, 0), "pending, all tenants")) : null,
        el("h2", {}, "Consumers"),
        table(["consumer", "lag (messages)", "behind", "ack pending", "redelivered", "ack floor", "dead letters", ""],
          o.consumers.map((c) => el("tr", { "data-consumer": c.name },
            el("td", {}, c.name), el("td", { class: "num lag " + (c.pending ? "warn" : "ok"), "data-lag": c.pending }, c.pending),
            el("td", { class: "num" }, c.behind_seconds.toFixed(1) + " s"), el("td", { class: "num" }, c.ack_pending),
            el("td", { class: "num" }, c.redelivered), el("td", { class: "num" }, c.ack_floor),
            el("td", { class: "num " + (c.dead_letters ? "bad" : "") }, c.dead_letters), el("td", { class: "bad" }, c.error || "")))),
        el("h2", {}, "Services"),
        o.services.length ? table(["service", "ready", "detail"], o.services.map((s) => el("tr", { "data-service": s.name },
          el("td", {}, s.name), el("td", { class: s.ready ? "ok" : "bad" }, s.ready ? "ready" : "not ready"), el("td", {}, el("pre", {}, s.detail)))))
          : el("p", { class: "muted" }, "No services configured (--services)."),
        el("h2", {}, "Rejected events per tenant"),
        o.rejected.length ? table(["tenant", "pending", "total"], o.rejected.map((t) => el("tr", {},
          el("td", {}, t.tenant || "(no tenant)"), el("td", { class: "num" }, t.pending), el("td", { class: "num" }, t.total))))
          : el("p", { class: "muted" }, "None."),
        el("p", { class: "muted" }, "Measured " + when(o.at) + "; refreshes every 2 s."),
      ];
    },
    async "dead-letters"() {
      const all = $("dl-all") ? $("dl-all").checked : false;
      const d = await api("GET", "dead-letters" + (all ? "?all=1" : ""));
      return [
        el("h1", {}, "Dead letters"),
        el("label", {}, el("input", { type: "checkbox", id: "dl-all", checked: all, onchange: () => open("dead-letters") }), " include replayed"),
        d.dead_letters.length ? table(["consumer", "seq", "tenant", "subject", "reason", "failures", "failed", "body", ""],
          d.dead_letters.map((l) => el("tr", { "data-letter": l.consumer + ":" + l.seq },
            el("td", {}, l.consumer), el("td", { class: "num" }, l.seq), el("td", {}, l.tenant), el("td", {}, el("code", {}, l.subject)),
            el("td", { class: "bad" }, l.reason), el("td", { class: "num" }, l.failures), el("td", {}, when(l.failed_at)),
            el("td", {}, el("pre", {}, l.body)),
            el("td", {}, l.replayed_at ? el("span", { class: "ok" }, "replayed " + when(l.replayed_at))
              : el("button", { type: "button", class: "primary", "data-replay": l.consumer + ":" + l.seq, onclick: () => replay(l) }, "Replay")))))
          : el("p", { class: "muted", id: "no-letters" }, "No dead letters pending."),
      ];
    },
    async rejected() {
      const tenant = $("rj-tenant") ? $("rj-tenant").value : "";
      const d = await api("GET", "rejected" + (tenant ? "?tenant=" + encodeURIComponent(tenant) : ""));
      return [
        el("h1", {}, "Rejected events"),
        el("p", { class: "muted" }, "Messages on a tenant's subjects that failed validation; replay them with eventline rejected replay after a fix."),
        filters([["tenant", "rj-tenant", tenant]], () => open("rejected")),
        table(["seq", "tenant", "subject", "errors", "stored", "body"], d.rejected_events.map((x) => el("tr", {},
          el("td", { class: "num" }, x.seq), el("td", {}, x.tenant), el("td", {}, el("code", {}, x.subject)),
          el("td", { class: "bad" }, x.errors.map((e) => el("div", {}, e.field + ": " + e.message))), el("td", {}, when(x.stream_time)),
          el("td", {}, el("pre", {}, x.body))))),
      ];
    },
    async endpoints() {
      const tenant = $("ep-tenant") ? $("ep-tenant").value : "";
      const d = await api("GET", "endpoints" + (tenant ? "?tenant=" + encodeURIComponent(tenant) : ""));
      const cls = { healthy: "ok", idle: "muted", failing: "bad", disabled: "warn" };
      return [
        el("h1", {}, "Webhook endpoints"),
        filters([["tenant", "ep-tenant", tenant]], () => open("endpoints")),
        table(["tenant", "url", "events", "health", "24 h ok / failed / pending", "consecutive failures", "last attempt", ""],
          d.endpoints.map((e) => el("tr", { "data-endpoint": e.id },
            el("td", {}, e.tenant), el("td", {}, e.url), el("td", {}, e.events.join(", ")),
            el("td", { class: cls[e.health] }, e.health, e.disabled_reason ? el("div", { class: "muted" }, e.disabled_reason) : null),
            el("td", { class: "num" }, e.succeeded_24h + " / " + e.failed_24h + " / " + e.pending_24h),
            el("td", { class: "num" }, e.consecutive_failures), el("td", {}, when(e.last_attempt_at)),
            el("td", {}, el("button", { type: "button", onclick: () => { state.endpoint = e.id; open("deliveries"); } }, "Deliveries"))))),
      ];
    },
    async deliveries() {
      const tenant = $("dv-tenant") ? $("dv-tenant").value : "";
      const status = $("dv-status") ? $("dv-status").value : "";
      const endpoint = state.endpoint || "";
      const qs = new URLSearchParams({ tenant, status, endpoint });
      const d = await api("GET", "deliveries?" + qs);
      return [
        el("h1", {}, "Delivery log"),
        endpoint ? el("p", {}, "Endpoint " + endpoint + " ", el("button", { type: "button", onclick: () => { state.endpoint = ""; open("deliveries"); } }, "all endpoints")) : null,
        filters([["tenant", "dv-tenant", tenant], ["status", "dv-status", status, ["", "pending", "succeeded", "failed"]]], () => open("deliveries")),
        table(["created", "tenant", "event", "endpoint", "status", "attempts", "last answer"], d.deliveries.map((x) => el("tr", { "data-delivery": x.id },
          el("td", {}, when(x.created_at)), el("td", {}, x.tenant), el("td", {}, x.event_type, el("div", {}, el("code", { class: "muted" }, x.event_id))),
          el("td", {}, x.url), el("td", { class: x.status === "succeeded" ? "ok" : x.status === "failed" ? "bad" : "warn" }, x.status,
            x.next_attempt_at ? el("div", { class: "muted" }, "next " + when(x.next_attempt_at)) : null),
          el("td", { class: "num" }, x.attempts),
          el("td", {}, x.last_status_code ? "HTTP " + x.last_status_code : "", x.last_error ? el("div", { class: "bad" }, x.last_error) : null,
            x.last_duration_ms ? el("div", { class: "muted" }, x.last_duration_ms + " ms") : null)))),
      ];
    },
    async timeline() {
      const v = (id) => ($(id) ? $(id).value : "");
      const tenant = v("tl-tenant") || state.tenant || "";
      const type = v("tl-type"), id = v("tl-id"), action = v("tl-action");
      const head = [el("h1", {}, "Timeline explorer"),
        filters([["tenant", "tl-tenant", tenant], ["object type", "tl-type", type], ["object id", "tl-id", id], ["action", "tl-action", action]], () => { state.cursor = ""; open("timeline"); })];
      if (!tenant) {
        const t = await api("GET", "tenants");
        return head.concat(el("p", { class: "muted" }, "Pick a tenant: " + t.tenants.join(", ")));
      }
      state.tenant = tenant;
      const qs = new URLSearchParams({ tenant });
      if (type || id) { qs.set("type", type); qs.set("id", id); }
      if (action) qs.set("action", action);
      if (state.cursor) qs.set("cursor", state.cursor);
      const p = await api("GET", "timeline?" + qs);
      return head.concat(
        table(["occurred", "seq", "type", "eventable", "creator", "parents", "particulars"], p.events.map((e) => el("tr", {},
          el("td", {}, when(e.occurred_at)), el("td", { class: "num" }, e.seq), el("td", {}, e.type),
          el("td", {}, e.eventable.type + ":" + e.eventable.id), el("td", {}, e.creator.type + ":" + e.creator.id),
          el("td", {}, (e.parents || []).map((x) => x.type + ":" + x.id).join(", ")), el("td", {}, el("pre", {}, JSON.stringify(e.particulars)))))),
        p.next_cursor ? el("button", { type: "button", onclick: () => { state.cursor = p.next_cursor; open("timeline", true); } }, "Older") : null);
    },
  };

  function card(title, big, sub) {
    return el("div", { class: "card" }, el("div", { class: "muted" }, title), el("div", { class: "big" }, big), el("div", { class: "muted" }, sub));
  }

  function filters(fields, apply) {
    return el("form", { class: "filters", onsubmit: (ev) => { ev.preventDefault(); apply(); } },
      fields.map(([label, id, value, options]) => el("label", {}, label + " ",
        options ? el("select", { id }, options.map((o) => el("option", { value: o, selected: o === value }, o || "any")))
          : el("input", { id, value: value || "" }))),
      el("button", { type: "submit" }, "Show"));
  }

  async function replay(l) {
    try {
      const r = await api("POST", "dead-letters/replay", { consumer: l.consumer, seq: l.seq });
      notice(r.replayed ? "Replayed " + l.consumer + " seq " + l.seq + "." : "Still failing: " + r.reason, !r.replayed);
    } catch (e) { notice(e.message, true); }
    await open("dead-letters", true);
  }

  async function open(tab, keepNotice) {
    state.tab = tab;
    if (!keepNotice) notice("");
    for (const b of document.querySelectorAll("#tabs button")) b.setAttribute("aria-current", b.dataset.tab === tab ? "page" : "false");
    clearInterval(state.timer);
    try {
      $("view").replaceChildren(...(await views[tab]()).filter(Boolean));
    } catch (e) { notice(e.message, true); }
    if (tab === "overview") state.timer = setInterval(() => { if (state.tab === "overview") refresh(); }, 2000);
  }

  async function refresh() {
    try { $("view").replaceChildren(...(await views.overview()).filter(Boolean)); } catch (e) { notice(e.message, true); }
  }

  $("tabs").addEventListener("click", (ev) => { const t = ev.target.closest("button[data-tab]"); if (t) open(t.dataset.tab); });
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", "login", { token: $("login-form").token.value });
      $("login-form").reset();
      showApp();
    } catch (e) { notice(e.message, true); }
  });
  $("logout").addEventListener("click", async () => { await api("POST", "logout").catch(() => {}); showLogin(); });
  api("GET", "session").then(showApp, () => {});
})();
