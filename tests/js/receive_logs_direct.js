#!/usr/bin/env node
// RabbitMQ tutorial 4, "Routing": the subscriber, with amqplib.
//
// Adjusted for Warren's tests: the broker port and the exchange name come
// from the command line, it exits after COUNT messages, and a timer bounds
// the run. Tutorial 5's subscriber (receive_logs_topic.js) is this one with
// a topic exchange and binding keys for severities, as in the tutorials: it
// calls this module's function with exchangeType 'topic'.
//
// usage: receive_logs_direct.js PORT EXCHANGE COUNT SEVERITY [SEVERITY...]
const amqp = require('amqplib');

function main(exchangeType, keyName) {
  setTimeout(() => process.exit(14), 30000).unref(); // never hang a test run

  const [port, exchange, count, ...keys] = process.argv.slice(2);
  if (keys.length === 0) {
    console.error(`Usage: ${process.argv[1]} PORT EXCHANGE COUNT [${keyName}]...`);
    process.exit(1);
  }

  (async () => {
    const connection = await amqp.connect(`amqp://127.0.0.1:${port}`);
    const channel = await connection.createChannel();

    await channel.assertExchange(exchange, exchangeType, { durable: false });
    const q = await channel.assertQueue('', { exclusive: true });
    console.log(' [*] Queue %s', q.queue);
    for (const key of keys) {
      await channel.bindQueue(q.queue, exchange, key);
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
}

module.exports = main;

if (require.main === module) {
  main('direct', 'severity');
}
