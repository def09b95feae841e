"""Rank 0's bytes to every rank over TCP at MASTER_ADDR:MASTER_PORT: how the ranks of a
torchrun-style launch share NCCL's unique ids (an MPI launch uses MPI's broadcast instead).

Rank 0 listens; every other rank connects (retrying until rank 0 listens), sends its rank as 4
bytes, and waits. Once all world − 1 ranks have arrived, rank 0 sends each the payload as an
8-byte length and the bytes, so the exchange is also a barrier. Everything runs against one
deadline: a rank that does not arrive, or a rank 0 that never listens, is a RendezvousError
naming the address and what was missing, never a hang.
"""
import socket
import struct
import time

from convnet.replicas.launch import LaunchError

RETRY_SECONDS = 0.1


class RendezvousError(LaunchError):
    pass


def broadcast(payload, *, rank, world, address, port, timeout) -> bytes:
    """Rank 0's `payload` (bytes) on every rank; other ranks pass None."""
    deadline = time.monotonic() + timeout
    where = f"rendezvous at {address}:{port}"
    try:
        if rank == 0:
            return _serve(payload, world, address, port, deadline, where, timeout)
        return _fetch(rank, address, port, deadline, where, timeout)
    except socket.gaierror as error:
        raise RendezvousError(f"{where}: cannot resolve MASTER_ADDR ({error})") from None


def _left(deadline):
    return max(deadline - time.monotonic(), 1e-3)


def _serve(payload, world, address, port, deadline, where, timeout):
    arrived = {}
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                server.bind((address, port))
            except OSError as error:
                raise RendezvousError(f"{where}: rank 0 cannot listen there ({error})") from None
            server.listen(world)
            while len(arrived) < world - 1:
                server.settimeout(_left(deadline))
                try:
                    connection, _ = server.accept()
                except socket.timeout:
                    missing = sorted(set(range(1, world)) - set(arrived))
                    raise RendezvousError(
                        f"{where}: ranks {', '.join(map(str, missing))} did not arrive within "
                        f"{timeout:g} s") from None
                connection.settimeout(_left(deadline))
                peer = struct.unpack("!I", _receive(connection, 4, f"{where}: a rank"))[0]
                if not 0 < peer < world or peer in arrived:
                    connection.close()
                    raise RendezvousError(f"{where}: a second rank 0, a duplicate or a rank "
                                          f"outside WORLD_SIZE={world} arrived (rank {peer})")
                arrived[peer] = connection
            message = struct.pack("!Q", len(payload)) + payload
            for connection in arrived.values():
                connection.sendall(message)
        return payload
    finally:
        for connection in arrived.values():
            connection.close()


def _fetch(rank, address, port, deadline, where, timeout):
    while True:
        try:
            connection = socket.create_connection((address, port), timeout=_left(deadline))
            break
        except socket.gaierror:
            raise
        except OSError as error:   # refused or unreachable: rank 0 may not listen yet
            if time.monotonic() >= deadline:
                raise RendezvousError(f"{where}: rank 0 did not listen within {timeout:g} s "
                                      f"(rank {rank}; last try: {error})") from None
            time.sleep(RETRY_SECONDS)
    with connection:
        connection.settimeout(_left(deadline))
        connection.sendall(struct.pack("!I", rank))
        waiting = f"{where}: rank {rank} waiting for the other ranks"
        size = struct.unpack("!Q", _receive(connection, 8, waiting))[0]
        return _receive(connection, size, waiting)


def _receive(connection, size, waiting):
    """Exactly `size` bytes; a RendezvousError (naming `waiting`) on a timeout or an early close."""
    data = bytearray()
    while len(data) < size:
        try:
            chunk = connection.recv(size - len(data))
        except socket.timeout:
            raise RendezvousError(f"{waiting}: timed out") from None
        if not chunk:
            raise RendezvousError(f"{waiting}: the connection closed early")
        data += chunk
    return bytes(data)
