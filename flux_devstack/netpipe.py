"""A worker host's way to the stack's services: TCP ports piped through Unix sockets.

A cluster worker runs in a network namespace of its own (``devstack.cluster.own_host``), and the stack's
services listen on the machine's loopback only, so the host reaches them only through this pipe, as a real
host reaches them only through its network. Two halves, one per side, meet at Unix sockets in a folder both
see (a socket file crosses network namespaces; a TCP port does not)::

    python -m flux_devstack.netpipe gateway  <folder> <port>...  # machine: <port>.sock -> 127.0.0.1:<port>
    python -m flux_devstack.netpipe loopback <folder> <port>...  # worker: 127.0.0.1:<port> -> <port>.sock

Stopping the gateway (SIGSTOP) cuts the host off while its processes live on: what a network partition
does to a real worker.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    try:
        writer.write_eof()  # a half-close: the other direction may still carry an answer
    except (OSError, RuntimeError):
        writer.close()


def _joiner(connect):
    async def join(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            far_reader, far_writer = await connect()
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, far_writer), _pipe(far_reader, writer))
        writer.close()
        far_writer.close()

    return join


async def serve(side: str, folder: Path, ports: list[int]) -> None:
    servers = []
    for port in ports:
        sock = str(folder / f"{port}.sock")
        if side == "gateway":
            Path(sock).unlink(missing_ok=True)
            join = _joiner(lambda port=port: asyncio.open_connection("127.0.0.1", port))
            servers.append(await asyncio.start_unix_server(join, path=sock))
        else:
            join = _joiner(lambda sock=sock: asyncio.open_unix_connection(sock))
            servers.append(await asyncio.start_server(join, "127.0.0.1", port, reuse_address=True))
    print(f"netpipe {side}: {len(ports)} ports through {folder}", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[0] not in ("gateway", "loopback"):
        sys.exit("usage: python -m flux_devstack.netpipe gateway|loopback <folder> <port>...")
    folder = Path(argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(argv[0], folder, [int(p) for p in argv[2:]]))


if __name__ == "__main__":
    main(sys.argv[1:])
