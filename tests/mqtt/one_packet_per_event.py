"""An MQTT client that reads the way Home Assistant's does: one MQTT packet
per socket-readable event, through Python's ssl module (OpenSSL), never
asking whether TLS already decrypted and buffered more.

Usage: one_packet_per_event.py HOST PORT CA CLIENT_ID USERNAME PASSWORD TOPIC COUNT WAIT

Connects over TLS, subscribes to TOPIC (QoS 0), publishes COUNT messages to
it in one write, then waits up to WAIT seconds, reading one packet per
select() wake-up. Prints one JSON line: how many of its messages came back
and after how many seconds the last one did. If the broker packs several
MQTT packets into one TLS record, the rest sit in OpenSSL's buffer while
the socket looks idle, and fewer than COUNT come back.
"""

import json
import select
import socket
import ssl
import struct
import sys
import time


def string(b):
    return struct.pack("!H", len(b)) + b


def remaining(n):
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        if n:
            byte |= 0x80
        out.append(byte)
        if not n:
            return bytes(out)


def packet(kind, body):
    return bytes([kind]) + remaining(len(body)) + body


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("closed")
        data += chunk
    return data


def read_packet(sock):
    first = read_exact(sock, 1)[0]
    length, shift = 0, 0
    while True:
        b = read_exact(sock, 1)[0]
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return first, read_exact(sock, length)


def main():
    host, port, ca, client_id, user, password, topic, count, wait = sys.argv[1:]
    count, wait = int(count), float(wait)
    ctx = ssl.create_default_context(cafile=ca)
    raw = socket.create_connection((host, int(port)), timeout=10)
    sock = ctx.wrap_socket(raw, server_hostname=host)
    body = string(b"MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 600)
    body += string(client_id.encode()) + string(user.encode()) + string(password.encode())
    sock.sendall(packet(0x10, body))
    kind, ack = read_packet(sock)
    assert kind == 0x20 and ack[1] == 0, f"CONNACK {kind:#x} {ack!r}"
    sock.sendall(packet(0x82, struct.pack("!H", 1) + string(topic.encode()) + b"\x00"))
    kind, suback = read_packet(sock)
    assert kind == 0x90 and suback[-1] == 0, f"SUBACK {kind:#x} {suback!r}"

    burst = b"".join(
        packet(0x30, string(topic.encode()) + f"m{i}".encode()) for i in range(count)
    )
    start = time.monotonic()
    sock.sendall(burst)
    got, last = 0, None
    sock.setblocking(True)
    while got < count:
        left = wait - (time.monotonic() - start)
        if left <= 0:
            break
        readable, _, _ = select.select([sock], [], [], left)
        if not readable:
            break
        kind, _ = read_packet(sock)  # one packet per readable event
        if kind >> 4 == 3:
            got += 1
            last = time.monotonic() - start
    print(json.dumps({"sent": count, "received": got, "last_after_s": last}))


if __name__ == "__main__":
    main()
