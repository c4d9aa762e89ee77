# The classic asyncio SimpleEchoProtocol (port from argv): echoes "echo:" + data and
# closes the server when its client leaves.
import asyncio
import sys

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 2222


class SimpleEchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        print("Connection received!")
        self.transport = transport

    def data_received(self, data):
        print(data)
        self.transport.write(b"echo:")
        self.transport.write(data)

    def connection_lost(self, exc):
        print("Connection lost! Closing server...")
        server.close()


loop = asyncio.new_event_loop()
server = loop.run_until_complete(loop.create_server(SimpleEchoProtocol, 'localhost', PORT))
loop.run_until_complete(server.wait_closed())
