// The eventline webhook portal (docs/portal.md). It reads its token from
// the URL fragment (never sent to a server), forgets the fragment, and
// calls the webhook API with the token as a bearer credential. Everything
// shown is built with DOM nodes and textContent, never innerHTML.
"use strict";
(function () {
  const state = { token: "", endpoints: [], selected: null, timer: 0 };
  const $ = (id) => document.getElementById(id);

  const { el, when, notice } = window.eventline;


  async function api(method, path, body) {
    const res = await fetch(path, {
      method,
      headers: Object.assign({ Authorization: "Bearer " + state.token }, body ? { "Content-Type": "application/json" } : {}),
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (res.status === 401) {
      signedOut();
      throw new Error("the portal link has expired or is not valid; ask the application for a new one");
    }
    if (!res.ok) {
      const fields = (data && data.errors || []).map((e) => e.field + ": " + e.message).join("; ");
      throw new Error((data && data.detail || res.statusText) + (fields ? " (" + fields + ")" : ""));
    }
    return data;
  }

  function signedOut() {
    clearInterval(state.timer);
    $("signin").hidden = false;
    $("new").hidden = true;
    $("detail").hidden = true;
    $("endpoints").replaceChildren();
  }

  const run = (f) => async (ev) => {
    if (ev) ev.preventDefault();
    try { await f(ev); } catch (e) { notice(e.message, true); }
  };

  async function loadEndpoints() {
    const data = await api("GET", "/v1/webhooks?limit=200");
    state.endpoints = data.webhooks;
    $("empty").hidden = state.endpoints.length > 0;
    $("endpoints").replaceChildren(...state.endpoints.map((e) => el("li", {},
      el("button", { type: "button", "aria-current": String(state.selected === e.id), "data-endpoint": e.id, onclick: run(() => select(e.id)) },
        el("span", { class: e.enabled ? "ok" : "bad", "aria-label": e.enabled ? "enabled" : "disabled" }, e.enabled ? "● " : "○ "), e.url))));
  }

  async function select(id) {
    state.selected = id;
    await loadEndpoints();
    await renderDetail();
    clearInterval(state.timer);
    state.timer = setInterval(() => { if (state.selected) renderDeliveries().catch(() => {}); }, 2000);
  }

  async function renderDetail() {
    const e = state.endpoints.find((x) => x.id === state.selected);
    const d = $("detail");
    if (!e) { d.hidden = true; return; }
    d.hidden = false;
    const eventsInput = el("input", { name: "events", value: e.events.join(", "), "aria-label": "Event filter" });
    const since = el("input", { type: "datetime-local", name: "since", "aria-label": "Replay since", value: localInput(new Date(Date.now() - 3600e3)) });
    const until = el("input", { type: "datetime-local", name: "until", "aria-label": "Replay until", value: localInput(new Date()) });
    d.replaceChildren(
      el("div", { class: "card" },
        el("h2", {}, e.url),
        el("p", { class: "muted" }, e.description || "", e.enabled ? "" : " Disabled: " + (e.disabled_reason || "")),
        el("form", { class: "row", onsubmit: run(async () => {
          const events = eventsInput.value.split(",").map((s) => s.trim()).filter(Boolean);
          await api("PATCH", "/v1/webhooks/" + e.id, { events });
          notice("Event filter saved.");
          await select(e.id);
        }) }, el("label", {}, "Events", eventsInput), el("button", { type: "submit" }, "Save filter")),
        el("div", { class: "actions" },
          el("button", { type: "button", class: "primary", id: "send-test", onclick: run(async () => {
            const r = await api("POST", "/v1/webhooks/" + e.id + "/test");
            notice("Test event " + r.event.id + " sent.");
            await renderDeliveries();
          }) }, "Send test event"),
          el("button", { type: "button", onclick: run(async () => {
            const r = await api("POST", "/v1/webhooks/" + e.id + "/secret/rotate", { grace_seconds: 86400 });
            showSecret(r.secret, "New signing secret (the old one still signs for 24 hours):");
          }) }, "Rotate secret"),
          el("button", { type: "button", onclick: run(async () => {
            await api("POST", "/v1/webhooks/" + e.id + (e.enabled ? "/disable" : "/enable"));
            await select(e.id);
          }) }, e.enabled ? "Disable" : "Enable"),
          el("button", { type: "button", class: "danger", onclick: run(async () => {
            if (!confirm("Delete the endpoint " + e.url + "?")) return;
            await api("DELETE", "/v1/webhooks/" + e.id);
            state.selected = null;
            await loadEndpoints();
            $("detail").hidden = true;
          }) }, "Delete")),
        el("div", { id: "secret-box" })),
      el("div", { class: "card" },
        el("h3", {}, "Replay a time range"),
        el("form", { class: "row", onsubmit: run(async () => {
          const r = await api("POST", "/v1/webhooks/" + e.id + "/replay", { since: new Date(since.value).toISOString(), until: new Date(until.value).toISOString() });
          notice(r.deliveries + " deliveries scheduled.");
          await renderDeliveries();
        }) }, el("label", {}, "Since", since), el("label", {}, "Until", until), el("button", { type: "submit" }, "Replay"))),
      el("div", { class: "card" }, el("h3", {}, "Deliveries"), el("div", { id: "deliveries" }, el("p", { class: "muted" }, "Loading…"))));
    await renderDeliveries();
  }

  function localInput(d) {
    const p = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + "T" + p(d.getHours()) + ":" + p(d.getMinutes());
  }

  function showSecret(secret, label) {
    $("secret-box").replaceChildren(el("p", {}, label), el("p", { class: "secret", id: "secret" }, secret));
  }

  async function renderDeliveries() {
    const id = state.selected;
    const data = await api("GET", "/v1/webhooks/" + id + "/deliveries?limit=50");
    if (id !== state.selected || !$("deliveries")) return;
    if (data.deliveries.length === 0) {
      $("deliveries").replaceChildren(el("p", { class: "muted" }, "No deliveries yet. Send a test event."));
      return;
    }
    $("deliveries").replaceChildren(el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "Event"), el("th", {}, "Status"), el("th", {}, "Attempts"), el("th", {}, ""))),
      el("tbody", {}, data.deliveries.map((d) => el("tr", { "data-delivery": d.id, "data-event-type": d.event_type },
        el("td", {}, el("div", {}, d.event_type), el("code", { class: "muted" }, d.event_id), el("div", { class: "muted" }, when(d.created_at))),
        el("td", {}, el("span", { class: "badge " + d.status }, d.status), d.next_attempt_at ? el("div", { class: "muted" }, "next " + when(d.next_attempt_at)) : null),
        el("td", {}, el("ol", { class: "attempts" }, d.attempts.map((a) => el("li", { "data-status-code": a.status_code || "" },
          el("span", { class: a.status_code >= 200 && a.status_code < 300 ? "ok" : "bad" }, a.status_code ? "HTTP " + a.status_code : (a.error_class || "error")),
          " · " + a.duration_ms + " ms · " + when(a.at), a.error ? el("div", { class: "muted" }, a.error) : null)))),
        el("td", {}, el("button", { type: "button", "data-retry": d.id, onclick: run(async () => {
          await api("POST", "/v1/deliveries/" + d.id + "/retry");
          notice("Delivery queued again.");
          await renderDeliveries();
        }) }, "Retry")))))));
  }

  function start() {
    const params = new URLSearchParams(location.hash.slice(1));
    // The token survives a reload of this tab (sessionStorage), where a
    // frame may use storage at all.
    const saved = () => { try { return sessionStorage.getItem("eventline-portal-token"); } catch (e) { return null; } };
    state.token = params.get("token") || saved() || "";
    if (params.get("token")) {
      try { sessionStorage.setItem("eventline-portal-token", state.token); } catch (e) { /* storage blocked in this frame */ }
      history.replaceState(null, "", location.pathname + location.search);
    }
    if (!state.token) { signedOut(); return; }
    $("new").hidden = false;
    $("new").addEventListener("click", () => { $("create").hidden = false; $("create-form").url.focus(); });
    $("create-form").querySelector("[data-cancel]").addEventListener("click", () => { $("create").hidden = true; });
    $("create-form").addEventListener("submit", run(async () => {
      const f = $("create-form");
      const body = { url: f.url.value, events: f.events.value.split(",").map((s) => s.trim()).filter(Boolean) };
      if (f.description.value) body.description = f.description.value;
      const r = await api("POST", "/v1/webhooks", body);
      f.reset();
      $("create").hidden = true;
      notice("Endpoint created.");
      await select(r.id);
      showSecret(r.secret, "Signing secret: verify each delivery's webhook-signature with it (shown once):");
    }));
    loadEndpoints().then(() => { if (state.endpoints.length) return select(state.endpoints[0].id); }).catch((e) => notice(e.message, true));
  }
  start();
})();
