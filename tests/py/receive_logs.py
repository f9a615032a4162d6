#!/usr/bin/env python
"""RabbitMQ tutorial 3, "Publish/Subscribe": the subscriber.

Adjusted for Warren's tests: the broker port and the exchange name come
from the command line, it prints the server-generated queue name, exits
after COUNT messages, and an alarm bounds the run.

usage: receive_logs.py PORT EXCHANGE COUNT
"""
import signal
import sys

import pika

signal.alarm(30)  # never hang a test run

port = int(sys.argv[1])
exchange = sys.argv[2]
count = int(sys.argv[3])


def main():
    connection = pika.BlockingConnection(
        pika.ConnectionParameters(host='127.0.0.1', port=port))
    channel = connection.channel()

    channel.exchange_declare(exchange=exchange, exchange_type='fanout')

    result = channel.queue_declare(queue='', exclusive=True)
    queue_name = result.method.queue
    print(f" [*] Queue {queue_name}")

    channel.queue_bind(exchange=exchange, queue=queue_name)

    received = 0

    def callback(ch, method, properties, body):
        nonlocal received
        received += 1
        print(f" [x] {body.decode()}")
        if received >= count:
            ch.stop_consuming()

    channel.basic_consume(
        queue=queue_name, on_message_callback=callback, auto_ack=True)

    print(' [*] Waiting for logs. To exit press CTRL+C')
    channel.start_consuming()
    connection.close()


if __name__ == '__main__':
    main()
