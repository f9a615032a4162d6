#!/usr/bin/env node
// RabbitMQ tutorial 3, "Publish/Subscribe": the producer, with amqplib.
//
// Adjusted for Warren's tests: the broker port and the exchange name come
// from the command line, each further argument is published as one
// message, and a timer bounds the run.
//
// usage: emit_log.js PORT EXCHANGE MESSAGE [MESSAGE...]
const amqp = require('amqplib');

setTimeout(() => process.exit(14), 30000).unref(); // never hang a test run

const [port, exchange, ...rest] = process.argv.slice(2);
const messages = rest.length > 0 ? rest : ['info: Hello World!'];

(async () => {
  const connection = await amqp.connect(`amqp://127.0.0.1:${port}`);
  const channel = await connection.createChannel();

  await channel.assertExchange(exchange, 'fanout', { durable: false });
  for (const msg of messages) {
    channel.publish(exchange, '', Buffer.from(msg));
    console.log(' [x] Sent %s', msg);
  }

  await channel.close();
  await connection.close();
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
