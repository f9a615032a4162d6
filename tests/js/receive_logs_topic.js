#!/usr/bin/env node
// RabbitMQ tutorial 5, "Topics": the subscriber, with amqplib.
//
// As in the tutorials, this is tutorial 4's subscriber (receive_logs_direct.js)
// with a topic exchange, its binding keys patterns instead of severities.
//
// usage: receive_logs_topic.js PORT EXCHANGE COUNT BINDING_KEY [BINDING_KEY...]
require('./receive_logs_direct')('topic', 'binding_key');
