#!/usr/bin/env python
"""RabbitMQ tutorial 1, "Hello World!": the consumer.

Adjusted for Warren's tests: the broker port and the queue name come from
the command line, it exits after COUNT messages, and an alarm bounds the run.

usage: receive.py PORT QUEUE COUNT
"""
import signal
import sys

import pika

signal.alarm(30)  # never hang a test run

port = int(sys.argv[1])
queue = sys.argv[2]
count = int(sys.argv[3])


def main():
    connection = pika.BlockingConnection(
        pika.ConnectionParameters(host='127.0.0.1', port=port))
    channel = connection.channel()

    channel.queue_declare(queue=queue)

    received = 0

    def callback(ch, method, properties, body):
        nonlocal received
        received += 1
        print(f" [x] Received {body.decode()}")
        if received >= count:
            ch.stop_consuming()

    channel.basic_consume(queue=queue, on_message_callback=callback, auto_ack=True)

    print(' [*] Waiting for messages. To exit press CTRL+C')
    channel.start_consuming()
    connection.close()


if __name__ == '__main__':
    main()
