#!/usr/bin/env python
"""RabbitMQ tutorial 5, "Topics": the subscriber.

Adjusted for Warren's tests: the broker port and the exchange name come
from the command line, it exits after COUNT messages, and an alarm bounds
the run.

usage: receive_logs_topic.py PORT EXCHANGE COUNT BINDING_KEY [BINDING_KEY...]
"""
import signal
import sys

import pika

signal.alarm(30)  # never hang a test run

port = int(sys.argv[1])
exchange = sys.argv[2]
count = int(sys.argv[3])
binding_keys = sys.argv[4:]
if not binding_keys:
    sys.stderr.write("Usage: %s PORT EXCHANGE COUNT [binding_key]...\n" % sys.argv[0])
    sys.exit(1)


def main():
    connection = pika.BlockingConnection(
        pika.ConnectionParameters(host='127.0.0.1', port=port))
    channel = connection.channel()

    channel.exchange_declare(exchange=exchange, exchange_type='topic')

    result = channel.queue_declare(queue='', exclusive=True)
    queue_name = result.method.queue
    print(f" [*] Queue {queue_name}")

    for binding_key in binding_keys:
        channel.queue_bind(
            exchange=exchange, queue=queue_name, routing_key=binding_key)

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
