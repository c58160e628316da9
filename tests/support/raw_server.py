#!/usr/bin/env python3
"""A loopback TCP server that fails the way a broken network does, for the transport-fault tests.

  raw_server.py PORT stall|reset

stall: accepts, reads the request and never answers (the client times out, its request sent).
reset: accepts, reads the request, then closes with an RST (SO_LINGER 0): "connection reset by peer".
"""
import socket
import struct
import sys
import threading
import time


def serve(conn, mode):
    conn.settimeout(5)
    try:
        conn.recv(65536)
    except OSError:
        pass
    if mode == "reset":
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        return
    time.sleep(3600)


def main():
    port, mode = int(sys.argv[1]), sys.argv[2]
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(16)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn, mode), daemon=True).start()


if __name__ == "__main__":
    main()
