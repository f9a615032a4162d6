#!/usr/bin/env python
"""RabbitMQ tutorial 5, "Topics": the producer.

As in the tutorials, this is tutorial 4's producer (emit_log_direct.py) with
a topic exchange, its routing key a dotted topic instead of a severity.

usage: emit_log_topic.py PORT EXCHANGE ROUTING_KEY MESSAGE [MESSAGE...]
"""
import emit_log_direct

if __name__ == '__main__':
    emit_log_direct.main(exchange_type='topic')
