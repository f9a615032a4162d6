#!/usr/bin/env python
"""RabbitMQ tutorial 4, "Routing": the producer.

Adjusted for Warren's tests: the broker port and the exchange name come
from the command line, each further argument is published as one message
with routing key SEVERITY, and an alarm bounds the run. Tutorial 5's
producer (emit_log_topic.py) is this one with a topic exchange, as in the
tutorials: it calls main() with exchange_type='topic'.

usage: emit_log_direct.py PORT EXCHANGE SEVERITY MESSAGE [MESSAGE...]
"""
import signal
import sys

import pika


def main(exchange_type='direct'):
    signal.alarm(30)  # never hang a test run

    port = int(sys.argv[1])
    exchange = sys.argv[2]
    routing_key = sys.argv[3]
    messages = sys.argv[4:] or ['Hello World!']

    connection = pika.BlockingConnection(
        pika.ConnectionParameters(host='127.0.0.1', port=port))
    channel = connection.channel()

    channel.exchange_declare(exchange=exchange, exchange_type=exchange_type)

    for message in messages:
        channel.basic_publish(exchange=exchange, routing_key=routing_key, body=message)
        print(f" [x] Sent {routing_key}:{message}")
    connection.close()


if __name__ == '__main__':
    main()
