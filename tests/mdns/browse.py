"""python-zeroconf browsing and resolving service types, the reference for
`bench/run corpus`: how soon an independent mDNS implementation knows an
announced device, against hearth's pending list.

Usage: browse.py TYPE... (such as _hap._tcp)

Prints, for each service instance once it is resolved (SRV, TXT and an
address known):

    resolved ADDRESS UNIX_TIME

and exits on end of input.
"""

import socket
import sys
import threading
import time

from zeroconf import IPVersion, ServiceBrowser, ServiceStateChange, Zeroconf

lock = threading.Lock()
seen = set()


def on_change(zeroconf, service_type, name, state_change):
    if state_change is not ServiceStateChange.Added:
        return

    def resolve():
        info = zeroconf.get_service_info(service_type, name, timeout=10000)
        if info is None or not info.addresses:
            return
        at = time.time()
        with lock:
            if (service_type, name) in seen:
                return
            seen.add((service_type, name))
            for address in info.addresses:
                print(f"resolved {socket.inet_ntoa(address)} {at:.3f}", flush=True)

    threading.Thread(target=resolve, daemon=True).start()


def main():
    zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    types = [f"{t}.local." for t in sys.argv[1:]]
    ServiceBrowser(zc, types, handlers=[on_change])
    print("browsing", flush=True)
    sys.stdin.read()
    zc.close()


if __name__ == "__main__":
    main()
