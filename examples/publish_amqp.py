#!/usr/bin/env python3
"""Publishes one event straight to Herald's exchange over AMQP.

    pip install pika
    python3 examples/publish_amqp.py <tenant-id> [event-type]

The routing key is the event type; the body is the same JSON as
POST /v1/events plus tenant_id. Publisher confirms make the publish safe:
once confirmed, Herald will deliver the event.
"""
import json
import sys
import uuid

import pika

tenant_id = sys.argv[1]
event_type = sys.argv[2] if len(sys.argv) > 2 else "invoice.created"
event = {
    "tenant_id": tenant_id,
    "event_type": event_type,
    "id": f"evt_{uuid.uuid4().hex}",  # your idempotency key: repeats are dropped
    "data": {"invoice_id": "inv_1001", "amount": 4200, "currency": "EUR"},
    "source": "billing",
}
connection = pika.BlockingConnection(pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2f"))
channel = connection.channel()
channel.confirm_delivery()
channel.basic_publish(
    exchange="herald.events",
    routing_key=event_type,
    body=json.dumps(event),
    properties=pika.BasicProperties(content_type="application/json", delivery_mode=2),
    mandatory=True,
)
print(f"published {event['id']}")
connection.close()
