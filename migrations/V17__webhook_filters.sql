-- A webhook's payload filter: a JSONPath filter expression (RFC 9535) over
-- the event's data; the webhook gets only the events it holds for. NULL:
-- every event its types match.
ALTER TABLE webhooks ADD COLUMN filter text;
