#!/usr/bin/env python
"""RabbitMQ tutorial 2, "Work Queues": the worker.

Adjusted for Warren's tests: the broker port and the queue name come from
the command line; it exits after COUNT tasks; each dot in a task costs
0.1 s instead of 1 s; with HOLD_FILE it holds every task (unacked) until
that file exists, which lets a test make a worker "busy" for exactly as
long as it needs; an alarm bounds the run.

usage: worker.py PORT QUEUE COUNT [HOLD_FILE]
"""
import os
import signal
import sys
import time

import pika

signal.alarm(30)  # never hang a test run

port = int(sys.argv[1])
queue = sys.argv[2]
count = int(sys.argv[3])
hold_file = sys.argv[4] if len(sys.argv) > 4 else None


def main():
    connection = pika.BlockingConnection(
        pika.ConnectionParameters(host='127.0.0.1', port=port))
    channel = connection.channel()

    channel.queue_declare(queue=queue, durable=True)
    print(' [*] Waiting for messages. To exit press CTRL+C')

    done = 0

    def callback(ch, method, properties, body):
        nonlocal done
        print(f" [x] Received {body.decode()} delivery_mode={properties.delivery_mode}"
              f" redelivered={method.redelivered}")
        time.sleep(body.count(b'.') * 0.1)
        if hold_file is not None:
            while not os.path.exists(hold_file):
                time.sleep(0.01)
        print(f" [x] Done {body.decode()}")
        ch.basic_ack(delivery_tag=method.delivery_tag)
        done += 1
        if done >= count:
            ch.stop_consuming()

    channel.basic_qos(prefetch_count=1)
    channel.basic_consume(queue=queue, on_message_callback=callback)

    channel.start_consuming()
    connection.close()


if __name__ == '__main__':
    main()
