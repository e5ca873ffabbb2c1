"""GetSnapshotFile (code 11, `iggy snapshot`): the raw request, its ZIP reply and its errors.

Iggy's Python SDK (0.9.0) has no snapshot call, so the requests are raw (send_binary_request): the body
is [compression u8][types_count u8][type u8]*, the reply the bytes of a ZIP archive."""

from __future__ import annotations

import io
import zipfile

from apache_iggy import GlobalPermissions, Permissions

from galgo_compat import expect_error

GET_SNAPSHOT_FILE = 11
STORED, DEFLATED, BZIP2, ZSTD, LZMA, XZ = 1, 2, 3, 4, 5, 6
FS, PS, RES, TEST, LOGS, CONFIG, ALL = 1, 2, 3, 4, 5, 6, 100
ENTRY = {FS: "filesystem_overview.txt", PS: "process_list.txt", RES: "resource_usage.txt", TEST: "test.txt",
         LOGS: "server_logs.txt", CONFIG: "server_config.txt"}


def body(compression: int, *types: int) -> bytes:
    return bytes([compression, len(types), *types])


def opened(data: bytes) -> zipfile.ZipFile:
    z = zipfile.ZipFile(io.BytesIO(data))
    assert z.testzip() is None  # every entry's CRC-32 checks out
    return z


def galgod_pids(server) -> set[int]:
    """The pids of the galgods that may answer (a cluster's client may have moved to another node)."""
    return {server.pid, *(p.pid for p in getattr(server, "peers", []) if p is not None)}


async def test_a_snapshot_of_every_type_is_a_valid_zip_of_the_requested_entries(server):
    """All (100) with Deflated: the five entries Iggy's server writes for All, each deflated and true."""
    c = await server.client()
    z = opened(await c.send_binary_request(GET_SNAPSHOT_FILE, body(DEFLATED, ALL)))
    names = z.namelist()
    assert names == [ENTRY[t] for t in (FS, PS, RES, LOGS, CONFIG)]
    assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
    text = {n: z.read(n).decode() for n in names}
    assert str(server.workdir) in text["filesystem_overview.txt"]
    assert "Data directory:" in text["filesystem_overview.txt"]
    assert "galgod.lock" in text["filesystem_overview.txt"]
    pids = galgod_pids(server)
    marked = [ln for ln in text["process_list.txt"].splitlines() if ln.startswith("*")]
    assert len(marked) == 1 and int(marked[0][1:].split()[0]) in pids
    assert "VmRSS:" in text["resource_usage.txt"] and "open_fds:" in text["resource_usage.txt"]
    assert "galgo_" in text["resource_usage.txt"]  # the node's metrics
    assert "tcp.address=" in text["server_config.txt"]
    assert "root.password=(set)" in text["server_config.txt"]
    assert "iggy\n" not in text["server_config.txt"].split("root.password=")[1][:8]
    # The harness sends galgod's stderr to a file: the log is that file's tail.
    assert "starting (pid" in text["server_logs.txt"]


async def test_a_stored_snapshot_of_chosen_types_has_those_entries_in_order(server):
    """Stored (1) keeps the bytes as they are; the entries come in request order, a repeated type once."""
    c = await server.client()
    z = opened(await c.send_binary_request(GET_SNAPSHOT_FILE, body(STORED, TEST, CONFIG, TEST)))
    assert z.namelist() == ["test.txt", "server_config.txt"]
    assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    assert z.read("test.txt") == b"test\n"
    z = opened(await c.send_binary_request(GET_SNAPSHOT_FILE, body(DEFLATED)))
    assert z.namelist() == []


async def test_bad_snapshot_requests_are_refused_and_the_connection_stays_usable(server):
    """An unknown compression or type, All with another type, or a short body: 3 InvalidCommand; a
    compression Iggy knows that Galgo does not write (Bzip2, Zstd, Lzma, Xz): 5 FeatureUnavailable."""
    c = await server.client()
    for bad in (body(0, TEST), body(7, TEST), body(DEFLATED, 0), body(DEFLATED, 7), body(DEFLATED, ALL, TEST),
                bytes([DEFLATED, 3, TEST]), bytes([DEFLATED]), b"", body(STORED, TEST) + b"\x00"):
        await expect_error(c.send_binary_request(GET_SNAPSHOT_FILE, bad), r"invalid command")
    for comp in (BZIP2, ZSTD, LZMA, XZ):
        await expect_error(c.send_binary_request(GET_SNAPSHOT_FILE, body(comp, TEST)), r"feature.*unavailable")
    z = opened(await c.send_binary_request(GET_SNAPSHOT_FILE, body(STORED, TEST)))
    assert z.read("test.txt") == b"test\n"
    await c.ping()


async def test_a_snapshot_needs_read_servers(server):
    """Without read_servers (or manage_servers): 41 Unauthorized, before the body is read."""
    root = await server.client()
    await root.create_user("snap-plain", "secret-1")
    await root.create_user("snap-reader", "secret-2",
                           permissions=Permissions(GlobalPermissions(read_servers=True)))
    plain = await server.client("snap-plain", "secret-1")
    await expect_error(plain.send_binary_request(GET_SNAPSHOT_FILE, body(STORED, TEST)), r"unauthori[sz]ed")
    await expect_error(plain.send_binary_request(GET_SNAPSHOT_FILE, b"junk"), r"unauthori[sz]ed")
    reader = await server.client("snap-reader", "secret-2")
    z = opened(await reader.send_binary_request(GET_SNAPSHOT_FILE, body(STORED, TEST)))
    assert z.namelist() == ["test.txt"]
