#!/usr/bin/env node
// RabbitMQ tutorial 1, "Hello World!": the consumer, with amqplib.
//
// Adjusted for Warren's tests: the broker port and the queue name come from
// the command line, it exits after COUNT messages, and a timer bounds the run.
//
// usage: receive.js PORT QUEUE COUNT
const amqp = require('amqplib');

setTimeout(() => process.exit(14), 30000).unref(); // never hang a test run

const [port, queue, count] = process.argv.slice(2);

(async () => {
  const connection = await amqp.connect(`amqp://127.0.0.1:${port}`);
  const channel = await connection.createChannel();

  await channel.assertQueue(queue, { durable: false });

  let received = 0;
  await channel.consume(queue, async (msg) => {
    console.log(' [x] Received %s', msg.content.toString());
    received += 1;
    if (received === Number(count)) {
      await connection.close();
    }
  }, { noAck: true });
  console.log(' [*] Waiting for messages in %s. To exit press CTRL+C', queue);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
