"""A small AMQP test consumer: binds a durable queue to a service's events exchange and
collects the CloudEvents it receives (pika, Debian's package)."""

from __future__ import annotations

import json
import time
import uuid

import pika


class EventTap:
    """Collects every event published on `exchange` with a routing key matching `keys`.

    The queue is durable and not exclusive, so it survives a broker stop_app/start_app and
    keeps what was published while the tap was reconnecting."""

    def __init__(self, url: str, exchange: str, keys=("#",)):
        self.url, self.exchange = url, exchange
        self.queue = f"tap.{uuid.uuid4().hex[:10]}"
        self.events: list[dict] = []
        self._conn = None
        self._connect()
        self._bind(keys)

    def _bind(self, keys, timeout: float = 15.0):
        """Binds the tap once the exchange exists: a service declares it when its broker
        connection comes up, which may be a moment after the service reports ready."""
        deadline = time.monotonic() + timeout
        while True:
            ch = self._conn.channel()
            try:
                ch.queue_declare(self.queue, durable=True)
                for key in keys:
                    ch.queue_bind(self.queue, self.exchange, routing_key=key)
                ch.close()
                return
            except pika.exceptions.ChannelClosedByBroker as e:
                if e.reply_code != 404 or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _connect(self):
        self._conn = pika.BlockingConnection(pika.URLParameters(self.url))
        self._ch = self._conn.channel()

    def drain(self, timeout: float = 0.2) -> list[dict]:
        """Fetches whatever is queued now (reconnecting if the broker went away)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._conn is None or self._conn.is_closed:
                    self._connect()
                method, props, body = self._ch.basic_get(self.queue, auto_ack=True)
            except (pika.exceptions.AMQPError, OSError):
                self._conn = None
                if time.monotonic() > deadline:
                    return self.events
                time.sleep(0.1)
                continue
            if method is None:
                return self.events
            event = json.loads(body)
            event["_routing_key"] = method.routing_key
            event["_message_id"] = props.message_id
            self.events.append(event)

    def wait_for(self, n: int, timeout: float = 15.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain()
            if len(self.events) >= n:
                return self.events
            time.sleep(0.05)
        raise AssertionError(f"expected {n} events within {timeout}s, got {len(self.events)}: "
                             f"{[(e['type'], e.get('version')) for e in self.events]}")

    def close(self):
        try:
            if self._conn and self._conn.is_open:
                ch = self._conn.channel()
                ch.queue_delete(self.queue)
                self._conn.close()
        except (pika.exceptions.AMQPError, OSError):
            pass


def cloud_event(type_: str, subject: str, version: int, data: dict | None) -> dict:
    """A CloudEvents envelope shaped like the services' own."""
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "type": type_,
            "source": "/" + type_.split(".")[0], "subject": subject,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "datacontenttype": "application/json", "version": version, "data": data}


def publish(url: str, exchange: str, events, raw: bytes | None = None, routing_key: str | None = None):
    """Publishes events (dicts) - or one raw body - to the exchange with confirms."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        props = pika.BasicProperties(delivery_mode=2, content_type="application/cloudevents+json")
        if raw is not None:
            ch.basic_publish(exchange, routing_key or "election.created", raw, props)
        for ev in events:
            ch.basic_publish(exchange, routing_key or ev["type"], json.dumps(ev).encode(), props)
    finally:
        conn.close()


def candidate_data(cid: str, first: str, last: str, election: str, party: str = "Independent",
                   version: int = 1) -> dict:
    return {"id": cid, "firstName": first, "lastName": last, "fullName": f"{first} {last}",
            "politicalParty": party, "election": election, "homeState": "NY",
            "politcalExperience": "none", "version": version}


def election_data(eid: str, title: str, version: int = 1) -> dict:
    return {"id": eid, "title": title, "date": "2016-11-08T00:00:00.000+0000",
            "electionType": "FEDERAL", "description": None, "version": version}


def queue_depth(url: str, queue: str) -> int:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return conn.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        conn.close()
