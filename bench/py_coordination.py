"""The coordination benchmark, asyncio beside tide in one run: a producer and a
consumer through an asyncio.Queue(64), and two tasks taking turns on an
asyncio.Lock (acquire, sleep(0), release), the same programs as bench/coordination.c.
Prints items and hand-offs per second, the median of 5 runs, for both.

usage: python3 bench/py_coordination.py PATH/TO/coordination [SCALE]
(SCALE multiplies the work, 1 = 1,000,000 items and 2 x 500,000 hand-offs for tide;
asyncio does a tenth of that, its rate is per second all the same.)"""
import asyncio
import statistics
import subprocess
import sys
import time

RUNS = 5


async def queue_run(n):
    q = asyncio.Queue(64)

    async def producer():
        for i in range(n):
            await q.put(i + 1)

    async def consumer():
        for i in range(n):
            assert await q.get() == i + 1

    t0 = time.monotonic()
    await asyncio.gather(producer(), consumer())
    return n / (time.monotonic() - t0)


async def lock_run(n):
    lock = asyncio.Lock()
    count = 0

    async def turn_taker():
        nonlocal count
        for _ in range(n):
            async with lock:
                count += 1
                await asyncio.sleep(0)

    t0 = time.monotonic()
    await asyncio.gather(turn_taker(), turn_taker())
    assert count == 2 * n
    return 2 * n / (time.monotonic() - t0)


def python_figures(scale):
    items, handoffs = int(100000 * scale), int(50000 * scale)
    q = statistics.median(asyncio.run(queue_run(items)) for _ in range(RUNS))
    lk = statistics.median(asyncio.run(lock_run(handoffs)) for _ in range(RUNS))
    return q, lk


def main():
    binary = sys.argv[1]
    scale = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    out = subprocess.run([binary, str(scale)], check=True, capture_output=True, text=True).stdout
    tide = dict(line.split() for line in out.splitlines())
    tq, tl = float(tide["queue_items_per_s"]), float(tide["lock_handoffs_per_s"])
    pq, pl = python_figures(scale)
    print(f"{'':22}{'tide':>14}{'asyncio':>14}{'ratio':>8}")
    print(f"{'queue items/s':22}{tq:>14,.0f}{pq:>14,.0f}{tq / pq:>8.1f}")
    print(f"{'lock hand-offs/s':22}{tl:>14,.0f}{pl:>14,.0f}{tl / pl:>8.1f}")
    print(f"python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
