"""A HomeKit bulb announced over mDNS by python-zeroconf, driven line by line
from stdin, for hearth's discovery tests (tests/tests/it/discovery.rs).

Each line is a command; each is answered with one line, "ok ..." or
"error ...", once it has been carried out (for announcements: once
python-zeroconf has sent them):

    register R ADDRESS   responder R announces the bulb at ADDRESS, probing
                         for the name first as a real device would
    claim R ADDRESS      responder R announces the same bulb (same instance,
                         identity and host name) at ADDRESS without probing:
                         a second responder claiming a name that is taken
    update R ADDRESS     responder R re-announces the bulb at ADDRESS
    unregister R         responder R says goodbye (TTL 0)

A responder R is a Zeroconf instance of its own, made at its first command.
A device that comes back after a goodbye is best a new responder: one that
withdrew a name remembers it for a moment, and its probe then finds the name
taken (NonUniqueNameException).
Every responder sends from 127.0.0.1; the address a test gives is only what
the A record says, which is how each "device" gets its own address on one
loopback. The process closes every responder on end of input.
"""

import socket
import sys

from zeroconf import IPVersion, ServiceInfo, Zeroconf

SERVICE_TYPE = "_hap._tcp.local."
INSTANCE = "Hearth Test Bulb"
HOST = "hearth-test-bulb.local."
# A HomeKit lightbulb's TXT record: category 5 is a lightbulb; "id" is the
# accessory's device id, which hearth takes as its identity.
PROPERTIES = {
    "c#": "1",
    "ff": "0",
    "id": "0E:11:22:33:44:55",
    "md": "Test Bulb",
    "pv": "1.1",
    "s#": "1",
    "sf": "0",
    "ci": "5",
}


def info(address):
    return ServiceInfo(
        SERVICE_TYPE,
        f"{INSTANCE}.{SERVICE_TYPE}",
        port=51827,
        properties=PROPERTIES,
        server=HOST,
        addresses=[socket.inet_aton(address)],
    )


def main():
    responders = {}
    # What each responder announces now: its goodbye withdraws exactly that.
    announced = {}

    def responder(name):
        if name not in responders:
            responders[name] = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
        return responders[name]

    try:
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            try:
                command, args = words[0], words[1:]
                if command == "register" and len(args) == 2:
                    announced[args[0]] = info(args[1])
                    responder(args[0]).register_service(announced[args[0]])
                elif command == "claim" and len(args) == 2:
                    announced[args[0]] = info(args[1])
                    responder(args[0]).register_service(announced[args[0]], cooperating_responders=True)
                elif command == "update" and len(args) == 2:
                    announced[args[0]] = info(args[1])
                    responder(args[0]).update_service(announced[args[0]])
                elif command == "unregister" and len(args) == 1:
                    responder(args[0]).unregister_service(announced.pop(args[0]))
                else:
                    raise ValueError(f"unknown command {line.strip()!r}")
            except Exception as error:  # reported to the test, which fails
                print(f"error {error!r}", flush=True)
                continue
            print(f"ok {line.strip()}", flush=True)
    finally:
        for zc in responders.values():
            zc.close()


if __name__ == "__main__":
    main()
