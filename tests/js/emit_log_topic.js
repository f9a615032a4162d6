#!/usr/bin/env node
// RabbitMQ tutorial 5, "Topics": the producer, with amqplib.
//
// As in the tutorials, this is tutorial 4's producer (emit_log_direct.js)
// with a topic exchange, its routing key a dotted topic instead of a
// severity.
//
// usage: emit_log_topic.js PORT EXCHANGE ROUTING_KEY MESSAGE [MESSAGE...]
require('./emit_log_direct')('topic');
