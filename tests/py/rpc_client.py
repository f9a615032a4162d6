#!/usr/bin/env python
"""RabbitMQ tutorial 6, "RPC": the client.

Adjusted for Warren's tests: the broker port and the request queue come
from the command line; every N is sent before any answer is awaited, so
answers are matched to requests by correlation_id alone; with
--direct-reply-to it uses the `amq.rabbitmq.reply-to` pseudo-queue instead
of an exclusive server-named queue; an alarm bounds the run.

usage: rpc_client.py PORT QUEUE [--direct-reply-to] N [N...]
"""
import signal
import sys
import uuid

import pika

signal.alarm(30)  # never hang a test run

port = int(sys.argv[1])
queue = sys.argv[2]
args = sys.argv[3:]
direct_reply_to = '--direct-reply-to' in args
numbers = [int(a) for a in args if a != '--direct-reply-to']


class FibonacciRpcClient(object):

    def __init__(self):
        self.connection = pika.BlockingConnection(
            pika.ConnectionParameters(host='127.0.0.1', port=port))

        self.channel = self.connection.channel()

        if direct_reply_to:
            self.callback_queue = 'amq.rabbitmq.reply-to'
        else:
            result = self.channel.queue_declare(queue='', exclusive=True)
            self.callback_queue = result.method.queue
        print(f" [*] Reply queue {self.callback_queue}")

        self.channel.basic_consume(
            queue=self.callback_queue,
            on_message_callback=self.on_response,
            auto_ack=True)

        self.responses = {}

    def on_response(self, ch, method, props, body):
        if props.correlation_id in self.responses:
            self.responses[props.correlation_id] = int(body)
        else:
            print(f" [!] Unexpected correlation_id {props.correlation_id}")

    def call_all(self, numbers):
        corr_ids = []
        for n in numbers:
            corr_id = str(uuid.uuid4())
            corr_ids.append(corr_id)
            self.responses[corr_id] = None
            self.channel.basic_publish(
                exchange='',
                routing_key=queue,
                properties=pika.BasicProperties(
                    reply_to=self.callback_queue,
                    correlation_id=corr_id,
                ),
                body=str(n))
            print(f" [x] Requesting fib({n}) correlation_id={corr_id}")
        while any(v is None for v in self.responses.values()):
            self.connection.process_data_events(time_limit=1)
        return [(n, c, self.responses[c]) for n, c in zip(numbers, corr_ids)]


fibonacci_rpc = FibonacciRpcClient()
for n, corr_id, response in fibonacci_rpc.call_all(numbers):
    print(f" [.] Got fib({n}) = {response} correlation_id={corr_id}")
fibonacci_rpc.connection.close()
