'use strict';
// The bench contract for several processes, on Node's `ws` over Redis
// pub/sub with `ioredis`, written the way a Node developer scaling a `ws`
// server out would (the yardstick of the scale-out benchmarks, issue 12):
//   - each process subscribes to the Redis channel `u:<uid>` while it holds
//     a connection of that uid, and to `all` (broadcasts) from the start;
//   - a push is one PUBLISH: the answer is "ok" when Redis handed it to at
//     least one process (one that holds the uid), else "fail";
//   - GET /api/stats answers the cluster-wide count of authenticated
//     connections, kept in Redis (INCR/DECR), so any process can answer it;
//     a connection is counted once its uid's SUBSCRIBE is acknowledged, so a
//     push to a counted uid is never answered "fail".
// Otherwise the same as ../node-ws: the first text message is the uid, the
// line-JSON push port, "READY ws=<port> push=<port> stats=<port>".
const http = require('http');
const net = require('net');
const Redis = require('ioredis');
const { WebSocketServer } = require('ws');

const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const host = arg('--host', '127.0.0.1');
const redisUrl = arg('--redis', 'redis://127.0.0.1:6379/0');

const pub = new Redis(redisUrl); // commands: PUBLISH, INCR, DECR, GET
const sub = new Redis(redisUrl); // this process's pub/sub connection
const byUid = new Map(); // uid -> Set of this process's sockets
const subscribed = new Map(); // uid -> its SUBSCRIBE's promise, while this process holds the uid

sub.on('message', (channel, message) => {
  if (channel === 'all') {
    for (const set of byUid.values()) for (const ws of set) ws.send(message);
    return;
  }
  const set = byUid.get(channel.slice(2));
  if (set) for (const ws of set) ws.send(message);
});

async function join(ws, uid) {
  let set = byUid.get(uid);
  if (!set) {
    byUid.set(uid, (set = new Set()));
    subscribed.set(uid, sub.subscribe('u:' + uid));
  }
  set.add(ws);
  await subscribed.get(uid);
  await pub.incr('connections');
}

async function leave(ws, uid) {
  const set = byUid.get(uid);
  set.delete(ws);
  await pub.decr('connections');
  if (set.size === 0) {
    byUid.delete(uid);
    subscribed.delete(uid);
    await sub.unsubscribe('u:' + uid);
  }
}

const httpServer = http.createServer(async (req, res) => {
  if (req.url === '/api/stats') {
    const connections = Number(await pub.get('connections')) || 0;
    const body = JSON.stringify({ connections });
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  } else {
    res.writeHead(404);
    res.end();
  }
});

const wss = new WebSocketServer({ server: httpServer, maxPayload: 1024 * 1024 });
wss.on('connection', (ws) => {
  let uid = null;
  let joined = null;
  ws.on('message', (data, isBinary) => {
    if (uid !== null) return;
    if (isBinary) return ws.close(4001, 'first message must be text');
    uid = data.toString().trim();
    joined = join(ws, uid);
  });
  ws.on('close', () => {
    if (joined) joined.then(() => leave(ws, uid)).catch(() => {});
  });
  ws.on('error', () => {});
});

async function push(line) {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch (e) {
    return 'error: invalid JSON';
  }
  let channel;
  if (msg.broadcast === true) channel = 'all';
  else if (typeof msg.uid === 'string' || typeof msg.uid === 'number') channel = 'u:' + String(msg.uid);
  else return 'error: missing "uid" (or "broadcast": true)';
  try {
    return (await pub.publish(channel, line)) > 0 ? 'ok' : 'fail';
  } catch (e) {
    return 'error: ' + e.message;
  }
}

const pushServer = net.createServer((sock) => {
  sock.setNoDelay(true);
  sock.setEncoding('utf8');
  let buffer = '';
  let answered = Promise.resolve(); // answers leave in the order of their lines
  sock.on('data', (chunk) => {
    buffer += chunk;
    const pending = [];
    let start = 0;
    let nl;
    while ((nl = buffer.indexOf('\n', start)) >= 0) {
      let line = buffer.slice(start, nl);
      start = nl + 1;
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (line.trim() === '') continue;
      pending.push(push(line));
    }
    buffer = buffer.slice(start);
    if (pending.length === 0) return;
    answered = answered.then(() => Promise.all(pending)).then((answers) => {
      sock.write(answers.join('\n') + '\n');
    });
  });
  sock.on('error', () => {});
});

let waiting = 3;
const ready = () => {
  if (--waiting > 0) return;
  const ws = httpServer.address().port;
  console.log(`READY ws=${ws} push=${pushServer.address().port} stats=${ws}`);
};
sub.subscribe('all').then(ready);
httpServer.listen(Number(arg('--port', '0')), host, 511, ready);
pushServer.listen(Number(arg('--push-port', '0')), host, 511, ready);
const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
