"""
Operations under load: N telnet users stay connected through a SIGHUP that
changes the MOTD, then a SIGTERM tells them all and exits 0.

Prints one JSON line: how long the reload took to apply, how many users
still received a line said after it, what a newcomer's MOTD was, and the
stop's exit status and duration.  Loopback only; bounded in count and time.

    python bench/reload_users.py --users 100
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def drain(sock: socket.socket, until: bytes = b"", timeout: float = 2.0) -> bytes:
    """
    Read what arrives until C{until} is seen (or, without it, one read),
    for at most C{timeout} seconds.
    """
    data, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            break
        data += chunk
        if not chunk or not until or until in data:
            break
    return data


def logged(path: str) -> str:
    with open(path) as f:
        return f.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--users", type=int, default=100)
    args = parser.parse_args()
    users = max(2, min(args.users, 5000))
    port = free_port()
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    ini = "[server]\nmotd = {}\n[web]\nlisten =\n[admin]\nlisten = none\n"
    with tempfile.TemporaryDirectory() as directory:
        config = os.path.join(directory, "tap.ini")
        with open(config, "w") as f:
            f.write(ini.format("old motd"))
        log_path = os.path.join(directory, "out.log")
        with open(log_path, "w") as log:
            server = subprocess.Popen(
                [
                    *(twistd, "-n", "--pidfile=", "tchat", "--config", config),
                    *("--telnet", f"tcp:{port}:interface=127.0.0.1"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=directory,
            )
        try:
            deadline = time.monotonic() + 15
            while "telnet door listening" not in logged(log_path):
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start")
                time.sleep(0.05)
            socks = [
                socket.create_connection(("127.0.0.1", port)) for _ in range(users)
            ]
            for s in socks:
                drain(s)
            with open(config, "w") as f:
                f.write(ini.format("new motd"))
            started = time.monotonic()
            server.send_signal(signal.SIGHUP)
            while "reload: applied" not in logged(log_path):
                if time.monotonic() - started > 10:
                    raise SystemExit("the reload was not applied")
                time.sleep(0.005)
            reload_s = time.monotonic() - started
            socks[0].sendall(b"still here\r\n")
            heard = sum(b"still here" in drain(s, b"still here") for s in socks[1:])
            newcomer = socket.create_connection(("127.0.0.1", port))
            motd = b"new motd" in drain(newcomer, b"new motd")
            socks.append(newcomer)
            started = time.monotonic()
            server.send_signal(signal.SIGTERM)
            status = server.wait(30)
            stop_s = time.monotonic() - started
            told = sum(b"going down" in drain(s, b"going down") for s in socks)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        print(
            json.dumps(
                {
                    "users": users,
                    "reload_seconds": round(reload_s, 4),
                    "heard_after_reload": heard,
                    "newcomer_sees_new_motd": motd,
                    "stop_exit_status": status,
                    "stop_seconds": round(stop_s, 3),
                    "told_going_down": told,
                    "traceback_in_log": "Traceback" in logged(log_path),
                }
            )
        )


if __name__ == "__main__":
    main()
