'use strict';
// The bench contract on Node's `ws`, written plainly, the way a Node
// developer would (ws.send per recipient, no frame tricks), so it is the
// yardstick issue 5 compares against:
//   - WebSocket on --port: the first text message is the uid;
//   - GET /api/stats on the same port: {"connections": <authenticated>};
//   - the line-JSON push port: {"uid":...} or {"broadcast":true,...} per
//     line, answered "ok" / "fail" per line, in order; clients receive the
//     line itself.
// Prints "READY ws=<port> push=<port> stats=<port>" once both listen.
const http = require('http');
const net = require('net');
const { WebSocketServer } = require('ws');

const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const host = arg('--host', '127.0.0.1');

const byUid = new Map(); // uid -> Set of sockets
let connections = 0;

const httpServer = http.createServer((req, res) => {
  if (req.url === '/api/stats') {
    const body = JSON.stringify({ connections, uids: byUid.size });
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
  ws.on('message', (data, isBinary) => {
    if (uid !== null) return;
    if (isBinary) return ws.close(4001, 'first message must be text');
    uid = data.toString().trim();
    let set = byUid.get(uid);
    if (!set) byUid.set(uid, (set = new Set()));
    set.add(ws);
    connections++;
  });
  ws.on('close', () => {
    if (uid === null) return;
    const set = byUid.get(uid);
    set.delete(ws);
    if (set.size === 0) byUid.delete(uid);
    connections--;
  });
  ws.on('error', () => {});
});

function push(line) {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch (e) {
    return 'error: invalid JSON';
  }
  let n = 0;
  if (msg.broadcast === true) {
    for (const set of byUid.values()) for (const ws of set) { ws.send(line); n++; }
  } else if (typeof msg.uid === 'string' || typeof msg.uid === 'number') {
    const set = byUid.get(String(msg.uid));
    if (set) for (const ws of set) { ws.send(line); n++; }
  } else {
    return 'error: missing "uid" (or "broadcast": true)';
  }
  return n > 0 ? 'ok' : 'fail';
}

const pushServer = net.createServer((sock) => {
  sock.setNoDelay(true);
  let buffer = '';
  sock.setEncoding('utf8');
  sock.on('data', (chunk) => {
    buffer += chunk;
    let answers = '';
    let start = 0;
    let nl;
    while ((nl = buffer.indexOf('\n', start)) >= 0) {
      let line = buffer.slice(start, nl);
      start = nl + 1;
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (line.trim() === '') continue;
      answers += push(line) + '\n';
    }
    buffer = buffer.slice(start);
    if (answers) sock.write(answers);
  });
  sock.on('error', () => {});
});

let listening = 0;
const ready = () => {
  if (++listening < 2) return;
  const ws = httpServer.address().port;
  console.log(`READY ws=${ws} push=${pushServer.address().port} stats=${ws}`);
};
httpServer.listen(Number(arg('--port', '0')), host, 511, ready);
pushServer.listen(Number(arg('--push-port', '0')), host, 511, ready);
const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
