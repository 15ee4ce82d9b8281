// The official Node SDK (memphis-dev) against our broker: one side of the round trip that
// tests/interop/test_memphis_js_sdk.py drives. Written for this project.
//
//   node memphis_js_roundtrip.js produce <port> <token> <station> <count>
//     creates <station> with 2 partitions and produces <count> messages "js-<i>" with the
//     header origin=js and msgId "js-<i>", each waiting for its ack.
//   node memphis_js_roundtrip.js fetch <port> <token> <station> <count>
//     fetches until <count> messages came (or 30 s passed) in the group "js", acks each, and
//     prints them as JSON: [{"data": ..., "headers": {...}}].
//
// Exit status 0 on success; the error on stderr otherwise.
'use strict';

const { memphis, MsgHeaders } = require('memphis-dev');

async function main() {
  const [mode, port, token, station, count] = process.argv.slice(2);
  const conn = await memphis.connect({
    host: '127.0.0.1',
    port: Number(port),
    username: 'root',
    connectionToken: token,
    suppressLogs: true,
  });
  try {
    if (mode === 'produce') {
      await conn.station({ name: station, partitionsNumber: 2 });
      const producer = await conn.producer({ stationName: station, producerName: 'js-producer' });
      for (let i = 0; i < Number(count); i++) {
        const headers = new MsgHeaders();
        headers.add('origin', 'js');
        await producer.produce({
          message: Buffer.from(`js-${i}`),
          headers,
          msgId: `js-${i}`,
          asyncProduce: false,
        });
      }
      await producer.destroy();
    } else if (mode === 'fetch') {
      const seen = [];
      const deadline = Date.now() + 30000;
      while (seen.length < Number(count) && Date.now() < deadline) {
        const messages = await conn.fetchMessages({
          stationName: station,
          consumerName: 'js-consumer',
          consumerGroup: 'js',
          batchSize: 10,
          batchMaxTimeToWaitMs: 500,
        });
        for (const message of messages) {
          seen.push({ data: Buffer.from(message.getData()).toString(), headers: message.getHeaders() });
          message.ack();
        }
      }
      process.stdout.write(JSON.stringify(seen) + '\n');
    } else {
      throw new Error(`unknown mode ${mode}`);
    }
  } finally {
    await conn.close();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
