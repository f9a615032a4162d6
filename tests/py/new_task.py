#!/usr/bin/env python
"""RabbitMQ tutorial 2, "Work Queues": the producer.

Adjusted for Warren's tests: the broker port and the queue name come from
the command line, each further argument is published as one task (the
tutorial joins them into a single message), and an alarm bounds the run.

usage: new_task.py PORT QUEUE MESSAGE [MESSAGE...]
"""
import signal
import sys

import pika

signal.alarm(30)  # never hang a test run

port = int(sys.argv[1])
queue = sys.argv[2]
messages = sys.argv[3:] or ["Hello World!"]

connection = pika.BlockingConnection(
    pika.ConnectionParameters(host='127.0.0.1', port=port))
channel = connection.channel()

channel.queue_declare(queue=queue, durable=True)

for message in messages:
    channel.basic_publish(
        exchange='',
        routing_key=queue,
        body=message,
        properties=pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent
        ))
    print(f" [x] Sent {message}")
connection.close()
