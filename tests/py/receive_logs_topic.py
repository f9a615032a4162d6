#!/usr/bin/env python
"""RabbitMQ tutorial 5, "Topics": the subscriber.

As in the tutorials, this is tutorial 4's subscriber (receive_logs_direct.py)
with a topic exchange, its binding keys patterns instead of severities.

usage: receive_logs_topic.py PORT EXCHANGE COUNT BINDING_KEY [BINDING_KEY...]
"""
import receive_logs_direct

if __name__ == '__main__':
    receive_logs_direct.main(exchange_type='topic', key_name='binding_key')
