# The line client over asyncio's streams (port from argv): sends four lines, reads lines
# back until "Last line." (or the end of the stream), closes.
import asyncio
import sys

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8888
LINES = ['First line.', 'Second line.', 'Third line.', 'Last line.']


async def line_client():
    reader, writer = await asyncio.open_connection('127.0.0.1', PORT, limit=1024)

    for line in LINES:
        print(f'Send: {line!r}')
        writer.write(line.encode() + b'\n')
    await writer.drain()

    while True:
        data = await reader.readline()
        line = data.decode().removesuffix('\n')
        print(f'Received: {line!r}')
        if not data or line == 'Last line.':
            break

    print('Close the connection')
    writer.close()
    await writer.wait_closed()

asyncio.run(line_client())
