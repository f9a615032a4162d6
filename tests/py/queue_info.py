#!/usr/bin/env python
"""Prints a queue's message and consumer counts (passive queue.declare).

usage: queue_info.py PORT QUEUE
"""
import signal
import sys

import pika

signal.alarm(30)  # never hang a test run

port = int(sys.argv[1])
queue = sys.argv[2]

connection = pika.BlockingConnection(
    pika.ConnectionParameters(host='127.0.0.1', port=port))
channel = connection.channel()
ok = channel.queue_declare(queue=queue, passive=True)
print(f"messages={ok.method.message_count} consumers={ok.method.consumer_count}")
connection.close()
