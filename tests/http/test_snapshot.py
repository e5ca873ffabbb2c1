"""POST /snapshot (GetSnapshotFile, NR 11): a ZIP file, Iggy's body {compression, snapshot_types}."""

from __future__ import annotations

import io
import zipfile

from test_http import Api, assert_error, login, root  # noqa: F401 (root is a fixture)


def opened(data: bytes) -> zipfile.ZipFile:
    z = zipfile.ZipFile(io.BytesIO(data))
    assert z.testzip() is None
    return z


def test_snapshot_of_all_is_a_zip_file(root, galgod):
    status, resp, data = root.call("POST", "/snapshot", {"compression": "Deflated", "snapshot_types": ["All"]})
    assert status == 200, data
    assert resp.getheader("content-type") == "application/zip"
    z = opened(data)
    assert z.namelist() == ["filesystem_overview.txt", "process_list.txt", "resource_usage.txt",
                            "server_logs.txt", "server_config.txt"]
    assert str(galgod.workdir) in z.read("filesystem_overview.txt").decode()
    marked = [ln for ln in z.read("process_list.txt").decode().splitlines() if ln.startswith("*")]
    assert len(marked) == 1 and int(marked[0][1:].split()[0]) == galgod.proc.pid
    assert "http.address=" in z.read("server_config.txt").decode()


def test_snapshot_defaults_names_and_stored(root):
    # Without fields: Iggy's GetSnapshot default (Deflated; four types).
    status, _, data = root.call("POST", "/snapshot", {})
    assert status == 200, data
    assert opened(data).namelist() == ["filesystem_overview.txt", "process_list.txt", "resource_usage.txt",
                                       "server_logs.txt"]
    status, _, data = root.call("POST", "/snapshot", {"compression": "stored",
                                                      "snapshot_types": ["test", "ServerConfig"]})
    assert status == 200, data
    z = opened(data)
    assert z.namelist() == ["test.txt", "server_config.txt"]
    assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    assert z.read("test.txt") == b"test\n"


def test_snapshot_errors(root):
    for body in ({"compression": "Gzip"}, {"snapshot_types": ["Everything"]}, {"snapshot_types": "All"},
                 {"compression": 2}):
        status, _, raw = root.call("POST", "/snapshot", body)
        assert status == 400, (body, raw)
        assert_error(raw, 4, "invalid_format")
    status, _, raw = root.call("POST", "/snapshot", {"snapshot_types": ["All", "Test"]})
    assert status == 400
    assert_error(raw, 3, "invalid_command")
    status, _, raw = root.call("POST", "/snapshot", {"compression": "Zstd", "snapshot_types": ["Test"]})
    assert status == 400
    assert_error(raw, 5, "feature_unavailable")
    status, _, raw = Api(root.port).call("POST", "/snapshot", {})
    assert status == 401
    root.json("POST", "/users", {"username": "snap-nobody", "password": "secret1", "status": "active",
                                 "permissions": None})
    nobody = Api(root.port, login(root, "snap-nobody", "secret1"))
    status, _, raw = nobody.call("POST", "/snapshot", {"snapshot_types": ["Test"]})
    assert status == 403
    assert_error(raw, 41, "unauthorized")
    assert root.call("GET", "/ping")[0] == 200
