#!/usr/bin/env python
"""RabbitMQ tutorial 6, "RPC": the Fibonacci server.

Adjusted for Warren's tests: the broker port and the request queue come
from the command line, it exits after COUNT requests, it prints where each
reply went, and an alarm bounds the run.

usage: rpc_server.py PORT QUEUE COUNT
"""
import signal
import sys

import pika

signal.alarm(30)  # never hang a test run

port = int(sys.argv[1])
queue = sys.argv[2]
count = int(sys.argv[3])


def fib(n):
    if n == 0:
        return 0
    elif n == 1:
        return 1
    else:
        return fib(n - 1) + fib(n - 2)


def main():
    connection = pika.BlockingConnection(
        pika.ConnectionParameters(host='127.0.0.1', port=port))
    channel = connection.channel()

    channel.queue_declare(queue=queue)

    served = 0

    def on_request(ch, method, props, body):
        nonlocal served
        n = int(body)

        print(f" [.] fib({n}) reply_to={props.reply_to}")
        response = fib(n)

        ch.basic_publish(exchange='',
                         routing_key=props.reply_to,
                         properties=pika.BasicProperties(
                             correlation_id=props.correlation_id),
                         body=str(response))
        ch.basic_ack(delivery_tag=method.delivery_tag)
        served += 1
        if served >= count:
            ch.stop_consuming()

    channel.basic_qos(prefetch_count=1)
    channel.basic_consume(queue=queue, on_message_callback=on_request)

    print(" [x] Awaiting RPC requests")
    channel.start_consuming()
    connection.close()


if __name__ == '__main__':
    main()
