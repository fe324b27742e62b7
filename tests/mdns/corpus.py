"""Announces every device of hearth's advert corpus (tests/fixtures/adverts)
with python-zeroconf, for the discovery corpus test
(tests/tests/it/discovery.rs).

Usage: corpus.py CORPUS.json...

Each device gets a responder of its own, bound to a source address of its
own on loopback (127.0.<n>.<m>), and announces every service the corpus
lists for it, with its host name, port and TXT record, and an A record of
its own (10.77.<n>.<m>: the address hearth lists it under). The responders
start together, as devices on a LAN do. For each device, once
python-zeroconf has announced all of its services, one line:

    announced ID ADDRESS STARTED ANNOUNCED

(Unix times: when its first probe was about to go, and when the last
announcement was sent),
then, when every device is announced, "ready". The process withdraws
everything (goodbye) and exits on end of input.
"""

import asyncio
import json
import socket
import sys
import time

from zeroconf import IPVersion, ServiceInfo
from zeroconf.asyncio import AsyncZeroconf


def addresses(i):
    n, m = divmod(i, 200)
    return f"127.0.{n + 1}.{m + 10}", f"10.77.{n + 1}.{m + 10}"


async def announce(dev, source, address):
    zc = AsyncZeroconf(interfaces=[source], ip_version=IPVersion.V4Only)
    infos = []
    for svc in dev["services"]:
        ty = svc["type"] + ".local."
        infos.append(
            ServiceInfo(
                ty,
                f"{svc['instance']}.{ty}",
                port=svc["port"],
                properties=svc["txt"],
                server=svc["host"],
                addresses=[socket.inet_aton(address)],
            )
        )
    # Probing, then announcing, as a device does: each task ends once
    # python-zeroconf has sent the announcement. Not strict: real devices
    # send service names longer than RFC 6763's 15 bytes
    # (_androidtvremote2._tcp).
    started = time.time()
    # All of a device's services at once, as a device announces them.
    tasks = await asyncio.gather(*(zc.async_register_service(info, strict=False) for info in infos))
    await asyncio.gather(*tasks)
    print(f"announced {dev['id']} {address} {started:.3f} {time.time():.3f}", flush=True)
    return zc, infos


async def main():
    devices = []
    for path in sys.argv[1:]:
        with open(path, encoding="utf-8") as f:
            devices.extend(json.load(f)["devices"])
    running = await asyncio.gather(
        *(announce(dev, *addresses(i)) for i, dev in enumerate(devices))
    )
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for zc, infos in running:
        for info in infos:
            await zc.async_unregister_service(info)
        await zc.async_close()


if __name__ == "__main__":
    asyncio.run(main())
