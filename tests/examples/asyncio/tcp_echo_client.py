# asyncio's documentation, Streams, "TCP echo client using streams" (port from argv).
import asyncio
import sys

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8888


async def tcp_echo_client(message):
    reader, writer = await asyncio.open_connection(
        '127.0.0.1', PORT)

    print(f'Send: {message!r}')
    writer.write(message.encode())
    await writer.drain()

    data = await reader.read(100)
    print(f'Received: {data.decode()!r}')

    print('Close the connection')
    writer.close()
    await writer.wait_closed()

asyncio.run(tcp_echo_client('Hello World!'))
