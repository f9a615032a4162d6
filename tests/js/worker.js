#!/usr/bin/env node
// RabbitMQ tutorial 2, "Work Queues": the worker, with amqplib.
//
// Adjusted for Warren's tests: the broker port and the queue name come from
// the command line; it exits after COUNT tasks; each dot in a task costs
// 0.1 s instead of 1 s; with HOLD_FILE it holds every task (unacked) until
// that file exists; a timer bounds the run.
//
// usage: worker.js PORT QUEUE COUNT [HOLD_FILE]
const amqp = require('amqplib');
const fs = require('fs');

setTimeout(() => process.exit(14), 30000).unref(); // never hang a test run

const [port, queue, count, holdFile] = process.argv.slice(2);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

(async () => {
  const connection = await amqp.connect(`amqp://127.0.0.1:${port}`);
  const channel = await connection.createChannel();

  await channel.assertQueue(queue, { durable: true });
  await channel.prefetch(1);

  let done = 0;
  await channel.consume(queue, async (msg) => {
    const body = msg.content.toString();
    const secs = body.split('.').length - 1;
    console.log(' [x] Received %s deliveryMode=%s redelivered=%s',
      body, msg.properties.deliveryMode, msg.fields.redelivered);
    await sleep(secs * 100);
    if (holdFile) {
      while (!fs.existsSync(holdFile)) {
        await sleep(10);
      }
    }
    console.log(' [x] Done %s', body);
    channel.ack(msg);
    done += 1;
    if (done === Number(count)) {
      await channel.close();
      await connection.close();
    }
  }, { noAck: false });
  console.log(' [*] Waiting for messages in %s. To exit press CTRL+C', queue);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
