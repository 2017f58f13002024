// Node's net echo server: one of the peers "switchboard compare --peers"
// measures switchboard against.
//
//     node echo.js PORT [HOST]
//
// socket.pipe(socket) is Node's idiomatic echo: every chunk read is written
// back, and the pipe pauses reading while the socket's write buffer is
// full, so a slow reader cannot grow the server's memory.
'use strict';

const net = require('net');

const [port, host = '127.0.0.1'] = process.argv.slice(2);
if (!port || process.argv.length > 4) {
  console.error('usage: node echo.js PORT [HOST]');
  process.exit(2);
}

const server = net.createServer({ noDelay: true }, (socket) => {
  socket.on('error', () => socket.destroy());
  socket.pipe(socket);
});

server.on('error', (err) => {
  console.error(`echo.js: ${err.message}`);
  process.exit(1);
});

server.listen({ port: Number(port), host, backlog: 4096 }, () => {
  console.log(`listening on ${host}:${port}`);
});

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
