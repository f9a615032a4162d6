#!/usr/bin/env node
// RabbitMQ tutorial 4, "Routing": the producer, with amqplib.
//
// Adjusted for Warren's tests: the broker port and the exchange name come
// from the command line, each further argument is published as one
// message with routing key SEVERITY, and a timer bounds the run. Tutorial
// 5's producer (emit_log_topic.js) is this one with a topic exchange, as in
// the tutorials: it calls this module's function with exchangeType 'topic'.
//
// usage: emit_log_direct.js PORT EXCHANGE SEVERITY MESSAGE [MESSAGE...]
const amqp = require('amqplib');

function main(exchangeType) {
  setTimeout(() => process.exit(14), 30000).unref(); // never hang a test run

  const [port, exchange, routingKey, ...rest] = process.argv.slice(2);
  const messages = rest.length > 0 ? rest : ['Hello World!'];

  (async () => {
    const connection = await amqp.connect(`amqp://127.0.0.1:${port}`);
    const channel = await connection.createChannel();

    await channel.assertExchange(exchange, exchangeType, { durable: false });
    for (const msg of messages) {
      channel.publish(exchange, routingKey, Buffer.from(msg));
      console.log(' [x] Sent %s: \'%s\'', routingKey, msg);
    }

    await channel.close();
    await connection.close();
  })().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}

module.exports = main;

if (require.main === module) {
  main('direct');
}
