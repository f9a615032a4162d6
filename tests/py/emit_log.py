#!/usr/bin/env python
"""RabbitMQ tutorial 3, "Publish/Subscribe": the producer.

Adjusted for Warren's tests: the broker port and the exchange name come
from the command line, each further argument is published as one message,
and an alarm bounds the run.

usage: emit_log.py PORT EXCHANGE MESSAGE [MESSAGE...]
"""
import signal
import sys

import pika

signal.alarm(30)  # never hang a test run

port = int(sys.argv[1])
exchange = sys.argv[2]
messages = sys.argv[3:] or ["info: Hello World!"]

connection = pika.BlockingConnection(
    pika.ConnectionParameters(host='127.0.0.1', port=port))
channel = connection.channel()

channel.exchange_declare(exchange=exchange, exchange_type='fanout')

for message in messages:
    channel.basic_publish(exchange=exchange, routing_key='', body=message)
    print(f" [x] Sent {message}")
connection.close()
