#!/usr/bin/env node
// RabbitMQ tutorial 1, "Hello World!": the producer, with amqplib.
//
// Adjusted for Warren's tests: the broker port and the queue name come from
// the command line, and a timer bounds the run.
//
// usage: send.js PORT QUEUE [MESSAGE]
const amqp = require('amqplib');

setTimeout(() => process.exit(14), 30000).unref(); // never hang a test run

const [port, queue, msg = 'Hello World!'] = process.argv.slice(2);

(async () => {
  const connection = await amqp.connect(`amqp://127.0.0.1:${port}`);
  const channel = await connection.createChannel();

  await channel.assertQueue(queue, { durable: false });
  channel.sendToQueue(queue, Buffer.from(msg));
  console.log(" [x] Sent '%s'", msg);

  await channel.close();
  await connection.close();
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
