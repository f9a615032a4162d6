#!/usr/bin/env node
// RabbitMQ tutorial 5, "Topics": the subscriber, with amqplib.
//
// Adjusted for Warren's tests: the broker port and the exchange name come
// from the command line, it exits after COUNT messages, and a timer bounds
// the run.
//
// usage: receive_logs_topic.js PORT EXCHANGE COUNT BINDING_KEY [BINDING_KEY...]
const amqp = require('amqplib');

setTimeout(() => process.exit(14), 30000).unref(); // never hang a test run

const [port, exchange, count, ...bindingKeys] = process.argv.slice(2);
if (bindingKeys.length === 0) {
  console.error('Usage: receive_logs_topic.js PORT EXCHANGE COUNT [binding_key]...');
  process.exit(1);
}

(async () => {
  const connection = await amqp.connect(`amqp://127.0.0.1:${port}`);
  const channel = await connection.createChannel();

  await channel.assertExchange(exchange, 'topic', { durable: false });
  const q = await channel.assertQueue('', { exclusive: true });
  console.log(' [*] Queue %s', q.queue);
  for (const bindingKey of bindingKeys) {
    await channel.bindQueue(q.queue, exchange, bindingKey);
  }

  let received = 0;
  await channel.consume(q.queue, async (msg) => {
    console.log(' [x] %s:%s', msg.fields.routingKey, msg.content.toString());
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
