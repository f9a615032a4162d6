#!/usr/bin/env python
"""pika over TLS, for tests/tls.rs: publishes one message to a queue and gets it back.

Usage: tls_client.py PORT CA_PEM QUEUE plain|external [CLIENT_CERT CLIENT_KEY]

Prints "got BODY" on success, or "refused EXCEPTION" when the broker refused the login.
"""
import ssl
import sys

import pika

port, ca, queue, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
context = ssl.create_default_context(cafile=ca)
if len(sys.argv) > 6:
    context.load_cert_chain(sys.argv[5], sys.argv[6])
if mode == "external":
    credentials = pika.credentials.ExternalCredentials()
else:
    credentials = pika.PlainCredentials("guest", "guest")
parameters = pika.ConnectionParameters(
    host="127.0.0.1",
    port=port,
    credentials=credentials,
    ssl_options=pika.SSLOptions(context, "localhost"),
    connection_attempts=1,
)
try:
    connection = pika.BlockingConnection(parameters)
except pika.exceptions.AMQPConnectionError as e:
    print("refused %s %r" % (type(e).__name__, e))
    sys.exit(0)
channel = connection.channel()
channel.queue_declare(queue=queue)
channel.basic_publish(exchange="", routing_key=queue, body=b"over tls")
method, _properties, body = channel.basic_get(queue=queue, auto_ack=True)
print("got %s" % body.decode())
connection.close()
