#!/usr/bin/env node
// RabbitMQ tutorial 6, "RPC": the client, with amqplib.
//
// Adjusted for Warren's tests: the broker port and the request queue come
// from the command line; every N is sent before any answer is awaited, so
// answers are matched to requests by correlationId alone; with
// --direct-reply-to it uses the `amq.rabbitmq.reply-to` pseudo-queue
// instead of an exclusive server-named queue; a timer bounds the run.
//
// usage: rpc_client.js PORT QUEUE [--direct-reply-to] N [N...]
const amqp = require('amqplib');
const crypto = require('crypto');

setTimeout(() => process.exit(14), 30000).unref(); // never hang a test run

const [port, queue, ...rest] = process.argv.slice(2);
const directReplyTo = rest.includes('--direct-reply-to');
const numbers = rest.filter((a) => a !== '--direct-reply-to').map((a) => parseInt(a, 10));

(async () => {
  const connection = await amqp.connect(`amqp://127.0.0.1:${port}`);
  const channel = await connection.createChannel();

  let replyQueue = 'amq.rabbitmq.reply-to';
  if (!directReplyTo) {
    const q = await channel.assertQueue('', { exclusive: true });
    replyQueue = q.queue;
  }
  console.log(' [*] Reply queue %s', replyQueue);

  const pending = new Map();
  const answers = new Map();
  let resolveAll;
  const allAnswered = new Promise((resolve) => { resolveAll = resolve; });
  await channel.consume(replyQueue, (msg) => {
    const id = msg.properties.correlationId;
    if (pending.has(id)) {
      answers.set(id, msg.content.toString());
      pending.delete(id);
      if (pending.size === 0) {
        resolveAll();
      }
    } else {
      console.log(' [!] Unexpected correlation_id %s', id);
    }
  }, { noAck: true });

  const requests = numbers.map((n) => [n, crypto.randomUUID()]);
  for (const [n, id] of requests) {
    pending.set(id, n);
  }
  for (const [n, id] of requests) {
    channel.sendToQueue(queue, Buffer.from(n.toString()), {
      correlationId: id,
      replyTo: replyQueue,
    });
    console.log(' [x] Requesting fib(%d) correlation_id=%s', n, id);
  }
  if (requests.length > 0) {
    await allAnswered;
  }
  for (const [n, id] of requests) {
    console.log(' [.] Got fib(%d) = %s correlation_id=%s', n, answers.get(id), id);
  }
  await connection.close();
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
