// Shared by eventline's pages (the webhook portal, the operator console):
// DOM building that inserts data as text only, never as HTML.
"use strict";
window.eventline = {
  // el builds an element: attributes (on* are listeners; true sets an
  // empty attribute, false and null leave it out) and children (nodes, or
  // text).
  el(tag, attrs, ...kids) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
      else if (v === true) n.setAttribute(k, "");
      else if (v !== false && v != null) n.setAttribute(k, v);
    }
    for (const k of kids.flat()) if (k != null) n.append(k instanceof Node ? k : String(k));
    return n;
  },
  // when formats a time for people, "" for none.
  when(t) { return t ? new Date(t).toLocaleString() : ""; },
  // notice shows a status line (the element with id "notice").
  notice(text, error) {
    const n = document.getElementById("notice");
    n.textContent = text || "";
    n.className = error ? "notice error" : "notice";
    n.hidden = !text;
  },
};
