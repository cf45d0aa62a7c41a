// Publishing an event to eventline over NATS with the official NATS.js
// client (docs/publishing-from-any-language.md shows this file).
import { connect } from "nats";

// publishEvent appends one event, given exactly as the body of
// POST /v1/events, and resolves with the stream's acknowledgement
// ({ stream: "EVENTS", seq, duplicate }) once it is durable.
export async function publishEvent({ servers, key, tenant, event }) {
  const nc = await connect({
    servers,
    token: key,                       // an eventline API key with the ingest scope
    inboxPrefix: `_INBOX.${tenant}`,  // the only inbox the key may use
  });
  try {
    const js = nc.jetstream();
    const subject = `events.${tenant}.${event.eventable.type}.${event.action}`;
    return await js.publish(subject, JSON.stringify(event), {
      msgID: `${tenant}:${event.id}`, // Nats-Msg-Id: re-sending the same id is de-duplicated
    });
  } finally {
    await nc.drain();
  }
}
