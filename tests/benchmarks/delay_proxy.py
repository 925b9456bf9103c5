#!/usr/bin/env python
"""A TCP delay proxy and a hung TCP peer, on loopback, for the inventory benchmark.

    delay_proxy.py --delay-ms 1.3 --forward 127.0.3.1:16509=127.0.2.1:16509 ... --hang 127.0.2.250:16509

Every ``--forward LISTEN=TARGET`` accepts connections on LISTEN and relays them to TARGET,
holding each chunk of data for the delay in each direction (so a request and its reply
cost twice the delay more than without the proxy: a WAN-like round trip). Chunks keep
their order and are delayed independently, like a long link rather than a slow one:
several requests in flight overlap their delays.

Every ``--hang ADDRESS`` accepts connections and reads them forever without answering,
like a hypervisor whose daemon is stuck.

It prints ``ready`` once every listener is bound and runs until SIGTERM or SIGINT.

asyncio's default selector (epoll) rounds its waits up to whole milliseconds, which would
turn 1.3 ms into 2 ms; select() waits to the microsecond, so this loop uses it (the proxy
has a few dozen sockets at most).
"""

import argparse
import asyncio
import os
import select
import selectors
import signal
import subprocess
import sys
import time

CHUNK = 256 * 1024


def _address(text):
    host, _separator, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    if not host.startswith("127."):
        raise argparse.ArgumentTypeError(f"{text!r}: only loopback addresses (127.x.x.x) are allowed")
    return host, int(port)


def _forward(text):
    listen, separator, target = text.partition("=")
    if not separator:
        raise argparse.ArgumentTypeError(f"{text!r} is not LISTEN_HOST:PORT=TARGET_HOST:PORT")
    return _address(listen), _address(target)


async def _relay(reader, writer, delay):
    """Copy reader to writer, each chunk delivered ``delay`` seconds after it arrived."""
    loop = asyncio.get_running_loop()
    pending = asyncio.Queue()

    async def deliver():
        while True:
            due, chunk = await pending.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                break
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    delivery = asyncio.ensure_future(deliver())
    try:
        while True:
            chunk = await reader.read(CHUNK)
            pending.put_nowait((loop.time() + delay, chunk))
            if not chunk:
                break
        await delivery
    except (ConnectionError, OSError):
        delivery.cancel()
        writer.close()  # the far side sees the end too, so the other direction ends


async def _proxy_connection(client_reader, client_writer, target, delay):
    try:
        server_reader, server_writer = await asyncio.open_connection(*target)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(_relay(client_reader, server_writer, delay),
                             _relay(server_reader, client_writer, delay))
    except asyncio.CancelledError:
        pass  # the proxy is stopping; returning (not raising) keeps asyncio's server quiet
    finally:
        for writer in (client_writer, server_writer):
            writer.close()


async def _hang_connection(reader, writer):
    try:
        while await reader.read(CHUNK):
            pass  # read and drop, never answer
    except (ConnectionError, OSError, asyncio.CancelledError):
        pass
    writer.close()


async def serve(forwards, hangs, delay):
    servers = []
    for listen, target in forwards:
        servers.append(await asyncio.start_server(
            lambda reader, writer, target=target: _proxy_connection(reader, writer, target, delay), *listen))
    for listen in hangs:
        servers.append(await asyncio.start_server(_hang_connection, *listen))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for server in servers:
        server.close()
    connections = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in connections:
        task.cancel()
    await asyncio.gather(*connections, return_exceptions=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--delay-ms", type=float, default=1.3, help="delay per direction (default 1.3)")
    parser.add_argument("--forward", type=_forward, action="append", default=[], metavar="LISTEN=TARGET")
    parser.add_argument("--hang", type=_address, action="append", default=[], metavar="ADDRESS")
    args = parser.parse_args(argv)
    if not args.forward and not args.hang:
        parser.error("nothing to do: give --forward and/or --hang")
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    try:
        loop.run_until_complete(serve(args.forward, args.hang, args.delay_ms / 1000.0))
    except OSError as error:
        print(f"delay_proxy: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        loop.close()
    return 0


class ProxyError(Exception):
    pass


class DelayProxy:
    """This proxy as a child process of the benchmark (in a session of its own)."""

    def __init__(self, log_path, pid_path, forwards, hangs):
        """forwards: ("host:port", "host:port") pairs to listen on and relay to; hangs: "host:port"s.

        pid_path records the running proxy, so a harness that was killed outright leaves
        one that the next run can end (end_stale)."""
        self.log_path = log_path
        self.pid_path = pid_path
        self.forwards = list(forwards)
        self.hangs = list(hangs)
        self.process = None
        self.delay_ms = None

    def start(self, delay_ms, timeout=10.0):
        self.stop()
        command = [sys.executable, __file__, "--delay-ms", repr(delay_ms)]
        for listen, target in self.forwards:
            command += ["--forward", f"{listen}={target}"]
        for listen in self.hangs:
            command += ["--hang", listen]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                            start_new_session=True)
        ready = select.select([self.process.stdout], [], [], timeout)[0]
        line = self.process.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            self.stop()
            with open(self.log_path, "rb") as log:
                reason = log.read().decode(errors="replace").strip().splitlines()[-1:] or ["no answer"]
            raise ProxyError(f"the delay proxy did not start: {reason[0]} (see {self.log_path})")
        self.pid_path.write_text(str(self.process.pid))
        self.delay_ms = delay_ms

    def stop(self):
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.process = None
        self.pid_path.unlink(missing_ok=True)

    def cpu_seconds(self):
        """CPU time the running proxy has used so far (user + system)."""
        with open(f"/proc/{self.process.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def end_stale(pid_path):
        """End the proxy an earlier, killed run left behind (recorded in pid_path); True if there was one."""
        try:
            pid = int(pid_path.read_text())
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                ours = os.path.basename(__file__).encode() in cmdline.read()
        except (OSError, ValueError):
            ours = False
        if ours:
            os.kill(pid, signal.SIGKILL)
        pid_path.unlink(missing_ok=True)
        return ours

    def start_calibrated(self, target_rtt_ms, direct_uri, proxied_uri, log=print, tolerance_ms=0.1):
        """Start with the delay that adds target_rtt_ms to a libvirt round trip, as measured.

        The proxy itself (Python, one more TCP hop, timer slack) adds a little on top of its
        delay, so the delay is corrected from a measurement: up to three tries.
        Returns (delay ms per direction, direct round trip ms, proxied round trip ms).
        """
        delay_ms = target_rtt_ms / 2
        for _attempt in range(3):
            self.start(delay_ms)
            direct, proxied = round_trip_ms(direct_uri), round_trip_ms(proxied_uri)
            added = proxied - direct
            log(f"delay proxy at {delay_ms:.3f} ms per direction adds {added:.2f} ms to a round trip "
                f"(getVersion: {direct:.3f} ms direct, {proxied:.3f} ms through the proxy)")
            if abs(added - target_rtt_ms) <= tolerance_ms:
                break
            delay_ms = max(0.0, delay_ms + (target_rtt_ms - added) / 2)
        return delay_ms, direct, proxied


def round_trip_ms(uri, calls=200):
    """Mean time of a trivial libvirt call (getVersion) over one connection, in ms."""
    # the proxy itself does not need libvirt
    import libvirt  # pylint: disable=import-outside-toplevel
    conn = libvirt.open(uri)
    try:
        for _warm_up in range(20):
            conn.getVersion()
        started = time.perf_counter()
        for _call in range(calls):
            conn.getVersion()
        return (time.perf_counter() - started) / calls * 1000.0
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
