// Node ws broadcast server: a benchmark peer for tchat's bench/matrix.py.
//
// The `ws` package (8.x) with permessage-deflate off and the standard
// broadcast loop from ws's README. Each client is greeted with the text
// message `welcome`; every message a client sends goes to every open client,
// the sender included, with the same type (text or binary) and payload. Any
// path is accepted. Binds on loopback only.
//
//     npm ci --prefix bench/peers/node
//     node bench/peers/node/server.js --port 0
//
// Prints `listening on 127.0.0.1:PORT` once listening; SIGTERM or SIGINT
// stops it with exit status 0.
'use strict';

const net = require('node:net');
const { WebSocketServer, WebSocket } = require('ws');

// The listen queue tchat asks for (tchat.endpoints.DEFAULT_BACKLOG), so that a
// burst of connections meets the same queue here as there (Node's default
// is 511).
const BACKLOG = 1024;

function parseArgs(argv) {
  const options = { host: '127.0.0.1', port: 0 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.split(/=(.*)/s);
    const value = inline !== undefined ? inline : argv[++i];
    if ((flag !== '--host' && flag !== '--port') || value === undefined) {
      throw new Error(`usage: server.js [--host 127.0.0.1] [--port 0] (at ${arg})`);
    }
    options[flag.slice(2)] = value;
  }
  options.port = Number(options.port);
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
    throw new Error('--port must be 0..65535');
  }
  const loopback =
    (net.isIPv4(options.host) && options.host.startsWith('127.')) ||
    (net.isIPv6(options.host) && /^(0*:)*:?0*1$/.test(options.host));
  if (!loopback) {
    throw new Error(`--host must be a loopback address, not ${options.host}`);
  }
  return options;
}

function main() {
  let options;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error(err.message);
    process.exit(2);
  }
  const { host, port } = options;
  const wss = new WebSocketServer({
    host,
    port,
    backlog: BACKLOG,
    perMessageDeflate: false,
  });

  wss.on('listening', () => {
    process.stdout.write(`listening on ${host}:${wss.address().port}\n`);
  });

  wss.on('connection', (ws, req) => {
    // ws already turns Nagle off on its sockets; say so anyway.
    req.socket.setNoDelay(true);
    // The client is in wss.clients before 'connection' is emitted.
    ws.send('welcome');
    ws.on('error', () => {});
    ws.on('message', (data, isBinary) => {
      wss.clients.forEach((client) => {
        if (client.readyState === WebSocket.OPEN) {
          client.send(data, { binary: isBinary });
        }
      });
    });
  });

  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.on(signal, () => process.exit(0));
  }
}

main();
