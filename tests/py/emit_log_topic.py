#!/usr/bin/env python
"""RabbitMQ tutorial 5, "Topics": the producer.

Adjusted for Warren's tests: the broker port and the exchange name come
from the command line, each further argument is published as one message
with routing key ROUTING_KEY, and an alarm bounds the run.

usage: emit_log_topic.py PORT EXCHANGE ROUTING_KEY MESSAGE [MESSAGE...]
"""
import signal
import sys

import pika

signal.alarm(30)  # never hang a test run

port = int(sys.argv[1])
exchange = sys.argv[2]
routing_key = sys.argv[3]
messages = sys.argv[4:] or ['Hello World!']

connection = pika.BlockingConnection(
    pika.ConnectionParameters(host='127.0.0.1', port=port))
channel = connection.channel()

channel.exchange_declare(exchange=exchange, exchange_type='topic')

for message in messages:
    channel.basic_publish(exchange=exchange, routing_key=routing_key, body=message)
    print(f" [x] Sent {routing_key}:{message}")
connection.close()
