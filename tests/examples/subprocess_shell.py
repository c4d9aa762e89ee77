# asyncio's documented subprocess example, run(cmd), as the docs print it: the
# original that examples/subprocess_shell.c is compared with, byte for byte.
#   python3 subprocess_shell.py CMD
import asyncio
import sys


async def run(cmd):
    proc = await asyncio.create_subprocess_shell(
        cmd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)

    stdout, stderr = await proc.communicate()

    print(f'[{cmd!r} exited with {proc.returncode}]')
    if stdout:
        print(f'[stdout]\n{stdout.decode()}')
    if stderr:
        print(f'[stderr]\n{stderr.decode()}')

asyncio.run(run(sys.argv[1]))
