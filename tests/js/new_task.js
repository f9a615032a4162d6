#!/usr/bin/env node
// RabbitMQ tutorial 2, "Work Queues": the producer, with amqplib.
//
// Adjusted for Warren's tests: the broker port and the queue name come from
// the command line, each further argument is published as one persistent
// task, and a timer bounds the run.
//
// usage: new_task.js PORT QUEUE MESSAGE [MESSAGE...]
const amqp = require('amqplib');

setTimeout(() => process.exit(14), 30000).unref(); // never hang a test run

const [port, queue, ...rest] = process.argv.slice(2);
const messages = rest.length > 0 ? rest : ['Hello World!'];

(async () => {
  const connection = await amqp.connect(`amqp://127.0.0.1:${port}`);
  const channel = await connection.createChannel();

  await channel.assertQueue(queue, { durable: true });
  for (const msg of messages) {
    channel.sendToQueue(queue, Buffer.from(msg), { persistent: true });
    console.log(" [x] Sent '%s'", msg);
  }

  await channel.close();
  await connection.close();
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
