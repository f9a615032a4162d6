#!/usr/bin/env python
"""RabbitMQ tutorial 1, "Hello World!": the producer.

Adjusted for Warren's tests: the broker port and the queue name come from
the command line, and an alarm bounds the run.

usage: send.py PORT QUEUE [MESSAGE]
"""
import signal
import sys

import pika

signal.alarm(30)  # never hang a test run

port = int(sys.argv[1])
queue = sys.argv[2]
message = sys.argv[3] if len(sys.argv) > 3 else 'Hello World!'

connection = pika.BlockingConnection(
    pika.ConnectionParameters(host='127.0.0.1', port=port))
channel = connection.channel()

channel.queue_declare(queue=queue)

channel.basic_publish(exchange='', routing_key=queue, body=message)
print(f" [x] Sent '{message}'")
connection.close()
