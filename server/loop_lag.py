"""How late the event loop runs what is due: a probe task's scheduling delay.

Every ``interval_s`` the probe asks to be woken ``interval_s`` later and records how much
later than that it actually ran. Every connection's reads, messages and sends wait for
the same loop, so this delay is what a frame that arrived just then waited before the
server looked at it: under a flood of tiny messages it is where one connection's load
shows up in everyone else's latency (docs/deployment.md, bench/flood.py).
"""

from __future__ import annotations

import asyncio

from prometheus_client import Histogram

INTERVAL_S = 0.05


async def watch(lag: Histogram, interval_s: float = INTERVAL_S) -> None:
    """Observe the loop's lag into ``lag`` every ``interval_s``, until cancelled."""
    if interval_s <= 0:
        raise ValueError(f"the probe interval must be positive, got {interval_s}")
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval_s
        await asyncio.sleep(interval_s)
        lag.observe(max(0.0, loop.time() - due))
