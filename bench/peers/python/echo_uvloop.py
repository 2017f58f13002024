"""asyncio echo server on uvloop: one of the peers that
"switchboard compare --peers" measures switchboard against.

    python3 echo_uvloop.py PORT [HOST]

It needs uvloop (Debian: apt-get install python3-uvloop). A Protocol, not
streams: the fastest way asyncio offers, as uvloop's own benchmarks use.
Reading pauses while the transport's write buffer is above its high-water
mark, so a slow reader cannot grow the server's memory.
"""

import asyncio
import resource
import signal
import socket
import sys

import uvloop


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.transport.write(data)

    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()


async def serve(port, host):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, host, port, backlog=4096, reuse_address=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    print(f"listening on {host}:{port}", flush=True)
    async with server:
        await stop


def main():
    if len(sys.argv) not in (2, 3):
        print("usage: python3 echo_uvloop.py PORT [HOST]", file=sys.stderr)
        sys.exit(2)
    host = sys.argv[2] if len(sys.argv) == 3 else "127.0.0.1"
    # As many connections as the hard limit allows, like the other peers.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(serve(int(sys.argv[1]), host))


if __name__ == "__main__":
    main()
