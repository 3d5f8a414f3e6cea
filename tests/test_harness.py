"""Proves the harness: real RabbitMQ and FerretDB start, work, survive outages."""

import pika
import pymongo

from harness import free_port, wait_until


def amqp_connect(rabbit):
    params = pika.URLParameters(rabbit.url)
    params.connection_attempts = 1
    params.socket_timeout = 5
    return pika.BlockingConnection(params)


def mongo_client(mongo):
    return pymongo.MongoClient(mongo.uri, directConnection=True, serverSelectionTimeoutMS=5000)


def test_free_port_is_below_ephemeral_range():
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20
    assert all(1024 < p < 32768 for p in ports)


def test_rabbitmq_publish_consume_with_confirms(rabbit, amqp_exchange):
    assert rabbit.url.startswith("amqp://guest:guest@127.0.0.1:") and rabbit.url.endswith("/%2F")
    assert max(rabbit.port, rabbit.dist_port, rabbit.epmd_port) < 32768
    conn = amqp_connect(rabbit)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.exchange_declare(amqp_exchange, exchange_type="topic", durable=True)
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(q, amqp_exchange, routing_key="election.*")
        # with confirms on, basic_publish raises unless the broker acks (and, with
        # mandatory, unless the message was routed)
        ch.basic_publish(amqp_exchange, "election.created", b'{"id":"1"}',
                         pika.BasicProperties(delivery_mode=2, content_type="application/json"),
                         mandatory=True)
        method, props, body = wait_until(lambda: _get(ch, q), timeout=5,
                                         message="message delivered to queue")
        assert body == b'{"id":"1"}'
        assert method.routing_key == "election.created"
        assert props.delivery_mode == 2
        ch.basic_ack(method.delivery_tag)
        # unroutable + mandatory is returned, not silently dropped
        try:
            ch.basic_publish(amqp_exchange, "nobody.listens", b"x", mandatory=True)
            raised = False
        except pika.exceptions.UnroutableError:
            raised = True
        assert raised
    finally:
        conn.close()


def _get(ch, queue):
    method, props, body = ch.basic_get(queue, auto_ack=False)
    return (method, props, body) if method else None


def test_ferretdb_insert_find(mongo, ns):
    client = mongo_client(mongo)
    try:
        coll = client[f"harness_{ns}"]["things"]
        coll.insert_one({"_id": "a", "n": 1})
        coll.insert_many([{"_id": "b", "n": 2}, {"_id": "c", "n": 3}])
        assert coll.find_one({"_id": "b"})["n"] == 2
        assert [d["_id"] for d in coll.find({"n": {"$gte": 2}}).sort("n", -1)] == ["c", "b"]
    finally:
        client.close()


def test_rabbitmq_stop_app_start_app_keeps_durable_queue(rabbit, ns):
    queue = f"harness.durable.{ns}"
    conn = amqp_connect(rabbit)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(queue, durable=True)
    ch.basic_publish("", queue, b"persisted", pika.BasicProperties(delivery_mode=2))

    rabbit.stop_app()
    # the broker closed our connection: the next operation fails
    try:
        ch.queue_declare(queue, durable=True, passive=True)
        conn.process_data_events(0)
        closed = not conn.is_open
    except (pika.exceptions.AMQPError, OSError):
        closed = True
    assert closed, "client connection survived stop_app"
    try:
        amqp_connect(rabbit).close()
        refused = False
    except pika.exceptions.AMQPConnectionError:
        refused = True
    assert refused, "broker accepted a connection while stopped"

    rabbit.start_app()
    conn2 = wait_until(lambda: amqp_connect(rabbit), timeout=20, message="AMQP after start_app")
    try:
        ch2 = conn2.channel()
        method, _, body = wait_until(lambda: _get(ch2, queue), timeout=5, message="persisted message")
        assert body == b"persisted"
        ch2.basic_ack(method.delivery_tag)
        ch2.queue_delete(queue)
    finally:
        conn2.close()


def test_ferretdb_kill_and_start_keeps_data(mongo, ns):
    client = mongo_client(mongo)
    try:
        client[f"harness_{ns}"]["kept"].insert_one({"_id": "x", "v": 42})
    finally:
        client.close()
    port = mongo.port
    mongo.kill()
    assert not mongo.running
    mongo.start()
    assert mongo.port == port
    client = mongo_client(mongo)
    try:
        assert client[f"harness_{ns}"]["kept"].find_one({"_id": "x"})["v"] == 42
    finally:
        client.close()
