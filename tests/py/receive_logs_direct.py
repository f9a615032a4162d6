#!/usr/bin/env python
"""RabbitMQ tutorial 4, "Routing": the subscriber.

Adjusted for Warren's tests: the broker port and the exchange name come
from the command line, it exits after COUNT messages, and an alarm bounds
the run. Tutorial 5's subscriber (receive_logs_topic.py) is this one with a
topic exchange and binding keys for severities, as in the tutorials: it
calls main() with exchange_type='topic'.

usage: receive_logs_direct.py PORT EXCHANGE COUNT SEVERITY [SEVERITY...]
"""
import signal
import sys

import pika


def main(exchange_type='direct', key_name='severity'):
    signal.alarm(30)  # never hang a test run

    port = int(sys.argv[1])
    exchange = sys.argv[2]
    count = int(sys.argv[3])
    keys = sys.argv[4:]
    if not keys:
        sys.stderr.write(f"Usage: {sys.argv[0]} PORT EXCHANGE COUNT [{key_name}]...\n")
        sys.exit(1)

    connection = pika.BlockingConnection(
        pika.ConnectionParameters(host='127.0.0.1', port=port))
    channel = connection.channel()

    channel.exchange_declare(exchange=exchange, exchange_type=exchange_type)

    result = channel.queue_declare(queue='', exclusive=True)
    queue_name = result.method.queue
    print(f" [*] Queue {queue_name}")

    for key in keys:
        channel.queue_bind(
            exchange=exchange, queue=queue_name, routing_key=key)

    received = 0

    def callback(ch, method, properties, body):
        nonlocal received
        received += 1
        print(f" [x] {method.routing_key}:{body.decode()}")
        if received >= count:
            ch.stop_consuming()

    channel.basic_consume(
        queue=queue_name, on_message_callback=callback, auto_ack=True)

    print(' [*] Waiting for logs. To exit press CTRL+C')
    channel.start_consuming()
    connection.close()


if __name__ == '__main__':
    main()
