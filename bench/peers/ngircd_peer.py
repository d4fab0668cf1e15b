"""
ngIRCd as a benchmark peer for C{bench/matrix.py}: Debian's IRC server in C
(C{apt-get install ngircd}; its system service is neither needed nor
touched), driven by C{loadgen --irc}.

ngIRCd cannot listen on port 0, so this launcher picks a free loopback port
(unless C{--port} names one), writes a private configuration into a fresh
temporary directory and I{replaces itself} with C{ngircd --nodaemon
--config FILE}: the server keeps this process's PID, so that the matrix's
CPU and memory figures (read from C{/proc/PID}) are ngIRCd's own and not a
launcher's, and SIGTERM or SIGINT reach ngIRCd directly (it stops with
status 0).  Just before that, a forked helper starts watching
C{/proc/net/tcp}; once ngIRCd listens it prints C{listening on
127.0.0.1:PORT} (the line the matrix waits for), removes the temporary
directory (ngIRCd has read its configuration by then) and exits.  ngIRCd
logs to stdout (C{--nodaemon}: no syslog).

    python bench/peers/ngircd_peer.py --port 0
    python bench/peers/ngircd_peer.py --stock          # without the shim
    python bench/peers/ngircd_peer.py --configtest     # ngircd --configtest
    python bench/peers/ngircd_peer.py --print-config

The configuration (see L{config}) listens on 127.0.0.1 only, with no DNS,
IDENT or PAM (no subprocess per connection), no connection, per-address or
channel-count limits, a MOTD phrase instead of a file, no PID file, no
snippets from C{/etc/ngircd}, and as little flood throttling as ngIRCd
allows: C{MaxPenaltyTime = 0} turns its penalty times into zero (by
default a client that sends more than 256 bytes in a second, or more
commands than one pass of the main loop handles, is not read for a
second), and every client gets user mode C{F} (C{DefaultUserModes}), so
that a pass of the main loop handles 10 of its commands instead of 3.
What no setting turns off: that limit of 10 commands per client per pass
(the rest wait in the client's read buffer for the next pass), and the
disconnection of a client whose unsent output passes 32 KiB ("Write buffer
space exhausted").

Two socket settings are not in ngIRCd's configuration at all: it never
turns Nagle's algorithm off (no C{TCP_NODELAY}) and asks for a listen queue
of 10, where tchat and every other peer of the matrix turn Nagle off and
ask for 1024.  Nagle alone cuts ngIRCd's C{saturate-50} deliveries by more
than half and adds tens of milliseconds to its p99; the queue of 10 makes
bursts of connections wait for the kernel's SYN retries.  So that the
comparison is of the servers and not of these two settings, the launcher
compiles a small shim (L{SHIM}, with C{cc}) and C{LD_PRELOAD}s it: it sets
C{TCP_NODELAY} on every accepted connection and raises the listen queue to
1024, nothing else.  C{--stock} runs ngIRCd without it.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAME = "bench.ngircd.invalid"
"""The server's IRC name (ngIRCd wants a dot in it)."""

LISTEN_TIMEOUT = 30.0
"""Seconds the helper waits for ngIRCd to listen."""

TCP_LISTEN = "0A"
"""The state of a listening socket in C{/proc/net/tcp}."""

BACKLOG = 1024
"""The listen queue tchat and the other peers ask for (ngIRCd asks for 10)."""

SHIM = rf"""
/* Preloaded into ngircd by bench/peers/ngircd_peer.py: the two socket
 * settings every other peer of the matrix has, and tchat too. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static int nodelay(int fd)
{{
    int one = 1;
    if (fd >= 0) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}}

int accept(int s, struct sockaddr *a, socklen_t *l)
{{
    int (*real)(int, struct sockaddr *, socklen_t *) = dlsym(RTLD_NEXT, "accept");
    return nodelay(real(s, a, l));
}}

int accept4(int s, struct sockaddr *a, socklen_t *l, int flags)
{{
    int (*real)(int, struct sockaddr *, socklen_t *, int) = dlsym(RTLD_NEXT, "accept4");
    return nodelay(real(s, a, l, flags));
}}

int listen(int s, int backlog)
{{
    int (*real)(int, int) = dlsym(RTLD_NEXT, "listen");
    return real(s, backlog < {BACKLOG} ? {BACKLOG} : backlog);
}}
"""
"""
C{LD_PRELOAD}ed into ngIRCd (unless C{--stock}): Nagle off on every
accepted connection, and a listen queue of L{BACKLOG}.
"""


def find_ngircd() -> str | None:
    """
    The ngircd binary: on PATH, or where Debian puts it (C{/usr/sbin}, which
    is not on every user's PATH).
    """
    found = shutil.which("ngircd")
    if found is not None:
        return found
    debian = Path("/usr/sbin/ngircd")
    return str(debian) if debian.exists() else None


def build_shim(workdir: Path) -> Path:
    """
    Compile L{SHIM} into C{workdir}; its path.

    @raise SystemExit: No C compiler, or it failed.
    """
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit(
            "ngircd_peer: no C compiler for the socket shim "
            "(apt-get install gcc, or run with --stock)"
        )
    source = workdir / "shim.c"
    source.write_text(SHIM)
    shim = workdir / "shim.so"
    done = subprocess.run(
        [cc, "-shared", "-fPIC", "-O2", "-o", str(shim), str(source), "-ldl"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"ngircd_peer: building the socket shim failed:\n{done.stderr}"
        )
    return shim


def free_port(host: str) -> int:
    """A port free on C{host} now (the kernel's pick; closed again at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def config(host: str, port: int, include: Path) -> str:
    """
    The configuration: ngIRCd's defaults except where a benchmark peer must
    differ (see the module docstring).

    @param include: An empty directory for C{IncludeDir}, so that no snippet
        of the system's C{/etc/ngircd/ngircd.conf.d} is read.
    """
    uid = ""
    if os.geteuid() == 0:
        # ngIRCd refuses to run as root and would switch to nobody anyway;
        # saying so here keeps its log free of the warning.
        nobody = pwd.getpwnam("nobody")
        uid = f"ServerUID = {nobody.pw_uid}\nServerGID = {nobody.pw_gid}\n"
    return f"""\
# Written by bench/peers/ngircd_peer.py for one benchmark run.
[Global]
Name = {NAME}
Info = tchat benchmark peer
AdminInfo1 = tchat benchmark peer
AdminInfo2 = loopback only
AdminEMail = nobody@{NAME}
Listen = {host}
Ports = {port}
MotdFile =
MotdPhrase = tchat benchmark peer
PidFile =
{uid}
[Limits]
# No connection limits, globally or per address (the generator is one
# address); any number of channels per client.
MaxConnections = 0
MaxConnectionsIP = 0
MaxJoins = 0
# 0: no penalty times at all (the default, -1, lets ngIRCd delay a client
# that sends fast by a second at a time).
MaxPenaltyTime = 0
PingTimeout = 120
PongTimeout = 20

[Options]
# No subprocess per connection: no DNS or IDENT lookup, no PAM.
DNS = no
Ident = no
PAM = no
RequireAuthPing = no
NoticeBeforeRegistration = no
# User mode F ("relaxed flood protection", otherwise for IRC operators to
# give): 10 commands of a client handled per pass of the main loop instead
# of 3, and never a penalty for sending fast.
DefaultUserModes = F
IncludeDir = {include}
"""


def loopback(host: str) -> bool:
    """Whether C{host} is an IPv4 loopback address."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == 4 and address.is_loopback


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=0, help="0 (the default): a free port"
    )
    parser.add_argument("--ngircd", help="the ngircd binary (default: found)")
    parser.add_argument(
        "--stock",
        action="store_true",
        help="run ngircd without the socket shim: Nagle on, listen backlog 10",
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--configtest",
        action="store_true",
        help="run ngircd --configtest on the configuration and exit with its status",
    )
    what.add_argument(
        "--print-config", action="store_true", help="print the configuration"
    )
    args = parser.parse_args()
    if not loopback(args.host):
        parser.error(f"--host must be an IPv4 loopback address, not {args.host!r}")
    if not 0 <= args.port <= 65535:
        parser.error("--port: 0..65535")
    return args


def listening(host: str, port: int) -> bool:
    """Whether a socket listens on C{host}:C{port} (from C{/proc/net/tcp})."""
    packed = socket.inet_aton(host)
    wanted = f"{int.from_bytes(packed, 'little'):08X}:{port:04X}"
    try:
        table = Path("/proc/net/tcp").read_text()
    except OSError:
        return False
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[1] == wanted and fields[3] == TCP_LISTEN:
            return True
    return False


def announce(server: int, host: str, port: int, workdir: Path) -> None:
    """
    The helper (a child of the launcher, then of ngIRCd): once ngIRCd
    listens, print the listening line; either way, remove the temporary
    directory; never return.
    """
    status = 1
    try:
        deadline = time.monotonic() + LISTEN_TIMEOUT
        while time.monotonic() < deadline and os.getppid() == server:
            if listening(host, port):
                print(f"listening on {host}:{port}", flush=True)
                status = 0
                break
            time.sleep(0.01)
        else:
            why = "exited" if os.getppid() != server else "did not listen"
            print(
                f"ngircd_peer: ngircd {why} on {host}:{port} within "
                f"{LISTEN_TIMEOUT:g} s",
                file=sys.stderr,
                flush=True,
            )
        # ngIRCd has read its configuration (and mapped the shim) by now.
        shutil.rmtree(workdir, ignore_errors=True)
    finally:
        os._exit(status)


def main() -> int:
    args = parse_args()
    port = args.port or free_port(args.host)
    if args.print_config:
        sys.stdout.write(config(args.host, port, Path("TMPDIR/conf.d")))
        return 0
    ngircd = args.ngircd or find_ngircd()
    if ngircd is None:
        print(
            "ngircd_peer: ngircd is not installed (apt-get install ngircd)",
            file=sys.stderr,
        )
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="ngircd-peer-"))
    include = workdir / "conf.d"
    include.mkdir()
    conf = workdir / "ngircd.conf"
    conf.write_text(config(args.host, port, include))
    argv = [ngircd, "--nodaemon", "--config", str(conf)]
    if args.configtest:
        try:
            return subprocess.run(
                [ngircd, "--configtest", "--config", str(conf)]
            ).returncode
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    env = dict(os.environ)
    if not args.stock:
        try:
            shim = build_shim(workdir)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        env["LD_PRELOAD"] = " ".join(p for p in (str(shim), env.get("LD_PRELOAD")) if p)
    sys.stdout.flush()
    sys.stderr.flush()
    server = os.getpid()
    if os.fork() == 0:
        announce(server, args.host, port, workdir)
    try:
        os.execve(ngircd, argv, env)
    except OSError as e:
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)
        print(f"ngircd_peer: cannot run {ngircd}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
