-- An endpoint may receive its deliveries as CloudEvents 1.0 in structured
-- JSON mode (docs/cloudevents.md).
ALTER TABLE webhook.endpoints DROP CONSTRAINT endpoints_format_check;
ALTER TABLE webhook.endpoints ADD CONSTRAINT endpoints_format_check CHECK (format IN ('json', 'slack', 'cloudevents'));
