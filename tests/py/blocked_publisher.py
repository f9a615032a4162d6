#!/usr/bin/env python
"""Resource alarms as a pika application sees them.

usage: blocked_publisher.py PORT QUEUE

A connection that never publishes declares QUEUE; a second connection publishes one
message and waits for connection.blocked. Prints one line per event:
  blocked <reason>       the publisher was sent connection.blocked
  observer-events <n>    how many blocked/unblocked events the non-publisher got
  depth <n>              QUEUE's message count seen by the non-publisher afterwards
"""
import signal
import sys

import pika

signal.alarm(30)  # never hang a test run

port = int(sys.argv[1])
queue = sys.argv[2]
params = pika.ConnectionParameters('127.0.0.1', port)

observer_events = []
observer = pika.BlockingConnection(params)
observer.add_on_connection_blocked_callback(lambda c, m: observer_events.append('blocked'))
observer.add_on_connection_unblocked_callback(lambda c, m: observer_events.append('unblocked'))
observer_channel = observer.channel()
observer_channel.queue_declare(queue)

publisher = pika.BlockingConnection(params)
reasons = []
publisher.add_on_connection_blocked_callback(
    lambda c, m: reasons.append(m.method.reason))
channel = publisher.channel()
channel.basic_publish('', queue, b'first')
for _ in range(50):
    publisher.process_data_events(0.1)
    if reasons:
        break
for reason in reasons:
    print('blocked', reason, flush=True)
# Further publishes are not read while the alarm lasts.
for _ in range(10):
    channel.basic_publish('', queue, b'more')
publisher.process_data_events(0.5)

observer.process_data_events(0.5)
print('observer-events', len(observer_events), flush=True)
depth = observer_channel.queue_declare(queue, passive=True).method.message_count
print('depth', depth, flush=True)
