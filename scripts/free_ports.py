#!/usr/bin/env python3
"""Prints N (default 1) free 127.0.0.1 TCP ports, space-separated, for the
servers the scripts start (Kafka, PostgreSQL, the Schema Registry).

The ports lie below the kernel's ephemeral range: a port the kernel handed
out for bind(0) was free when picked and could be taken by another test's
connection or embedded broker in the seconds before the server bound it
(a CI run: Kafka failed with "Address already in use")."""
import random
import socket
import sys


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    socks, seen = [], set()
    while len(socks) < count:
        port = random.randrange(10000, max(low, 10001))
        if port in seen:
            continue
        seen.add(port)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))


if __name__ == "__main__":
    main()
