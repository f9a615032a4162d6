#!/usr/bin/env node
// RabbitMQ tutorial 6, "RPC": the Fibonacci server, with amqplib.
//
// Adjusted for Warren's tests: the broker port and the request queue come
// from the command line, it exits after COUNT requests, it prints where
// each reply went, and a timer bounds the run.
//
// usage: rpc_server.js PORT QUEUE COUNT
const amqp = require('amqplib');

setTimeout(() => process.exit(14), 30000).unref(); // never hang a test run

const [port, queue, count] = process.argv.slice(2);

function fibonacci(n) {
  if (n === 0 || n === 1) {
    return n;
  }
  return fibonacci(n - 1) + fibonacci(n - 2);
}

(async () => {
  const connection = await amqp.connect(`amqp://127.0.0.1:${port}`);
  const channel = await connection.createChannel();

  await channel.assertQueue(queue, { durable: false });
  await channel.prefetch(1);

  let served = 0;
  await channel.consume(queue, async (msg) => {
    const n = parseInt(msg.content.toString(), 10);
    console.log(' [.] fib(%d) reply_to=%s', n, msg.properties.replyTo);
    const r = fibonacci(n);
    channel.sendToQueue(msg.properties.replyTo, Buffer.from(r.toString()), {
      correlationId: msg.properties.correlationId,
    });
    channel.ack(msg);
    served += 1;
    if (served === Number(count)) {
      await channel.close();
      await connection.close();
    }
  });
  console.log(' [x] Awaiting RPC requests');
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
