#!/usr/bin/env node
// Prints a queue's message and consumer counts (passive queue.declare).
//
// usage: queue_info.js PORT QUEUE
const amqp = require('amqplib');

setTimeout(() => process.exit(14), 30000).unref(); // never hang a test run

const [port, queue] = process.argv.slice(2);

(async () => {
  const connection = await amqp.connect(`amqp://127.0.0.1:${port}`);
  const channel = await connection.createChannel();
  const ok = await channel.checkQueue(queue);
  console.log(`messages=${ok.messageCount} consumers=${ok.consumerCount}`);
  await connection.close();
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
