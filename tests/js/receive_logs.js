#!/usr/bin/env node
// RabbitMQ tutorial 3, "Publish/Subscribe": the subscriber, with amqplib.
//
// Adjusted for Warren's tests: the broker port and the exchange name come
// from the command line, it prints the server-generated queue name, exits
// after COUNT messages, and a timer bounds the run.
//
// usage: receive_logs.js PORT EXCHANGE COUNT
const amqp = require('amqplib');

setTimeout(() => process.exit(14), 30000).unref(); // never hang a test run

const [port, exchange, count] = process.argv.slice(2);

(async () => {
  const connection = await amqp.connect(`amqp://127.0.0.1:${port}`);
  const channel = await connection.createChannel();

  await channel.assertExchange(exchange, 'fanout', { durable: false });
  const q = await channel.assertQueue('', { exclusive: true });
  console.log(' [*] Queue %s', q.queue);
  await channel.bindQueue(q.queue, exchange, '');

  let received = 0;
  await channel.consume(q.queue, async (msg) => {
    console.log(' [x] %s', msg.content.toString());
    received += 1;
    if (received === Number(count)) {
      await connection.close();
    }
  }, { noAck: true });
  console.log(' [*] Waiting for logs. To exit press CTRL+C');
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
