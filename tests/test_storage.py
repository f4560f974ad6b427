"""orchestrator/storage.py against a real S3-protocol server (moto, on 127.0.0.1) and local disk."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import pytest
from pyarrow import fs as pafs

from divsweep.orchestrator import storage


def test_normalize_keeps_uris_and_makes_paths_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert storage.normalize("s3://bucket/a/b/") == "s3://bucket/a/b"
    assert storage.normalize("gs://bucket") == "gs://bucket"
    assert storage.normalize("rel/x") == str(tmp_path / "rel/x")
    assert storage.normalize(f"file://{tmp_path}/y") == str(tmp_path / "y")
    with pytest.raises(ValueError, match="unsupported storage scheme 'hdfs'"):
        storage.normalize("hdfs://nn/x")
    with pytest.raises(ValueError, match="names no bucket"):
        storage.normalize("s3://")


def test_custom_endpoint_gives_tune_a_keyless_filesystem(monkeypatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    assert storage.tune_path("s3://b/p") == ("s3://b/p", None)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-to-be-pickled")
    path, fs = storage.tune_path("s3://b/p")
    assert path == "b/p" and fs is not None
    shipped = pickle.dumps(fs)  # what Tune ships to every worker
    assert b"127.0.0.1:9" in shipped and b"not-to-be-pickled" not in shipped
    # unpickled in a process that has the client, it is that client: no new SDK client
    assert pickle.loads(shipped).handler.s3 is fs.handler.s3
    assert fs.handler.s3.__reduce__()[1][0]["allow_delayed_open"]  # small files: one PUT
    assert storage.tune_path("/local/p") == ("/local/p", None)


def test_s3_folders_are_implicit_and_locations_keep_their_scheme(s3_bucket: str) -> None:
    fs, path = storage.resolve(storage.join(s3_bucket, "a"))
    fs.create_dir(f"{path}/b/c")  # writes no marker object...
    assert fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)) == []
    storage.write_text(storage.join(s3_bucket, "a", "b", "c", "f.txt"), "x")
    # ...and the folders are there while a file under them is
    assert fs.get_file_info(f"{path}/b/c").type == pafs.FileType.Directory
    assert storage.location_of(fs, f"{path}/b/c") == storage.join(s3_bucket, "a", "b", "c")
    assert storage.location_of(pafs.LocalFileSystem(), "/tmp/x") == "/tmp/x"


@pytest.mark.parametrize("where", ["local", "s3"])
def test_files_round_trip_and_find_newest_first(where: str, tmp_path: Path, request) -> None:
    root = str(tmp_path / "store") if where == "local" else request.getfixturevalue("s3_bucket")
    root = storage.join(root, "sweeps")
    assert storage.find(root, "sweep.json") == []  # a root that does not exist yet
    storage.write_text(storage.join(root, "a-1", "sweep.json"), "old")
    time.sleep(0.01 if where == "local" else 1.1)  # S3 mtimes have 1 s resolution
    storage.write_text(storage.join(root, "b-2", "sweep.json"), "new")
    storage.write_text(storage.join(root, "c-3", "other.txt"), "x")
    found = storage.find(root, "sweep.json")
    assert found == [
        storage.join(root, "b-2", "sweep.json"),
        storage.join(root, "a-1", "sweep.json"),
    ]
    assert storage.read_text(found[0]) == "new"
    assert storage.exists(found[1]) and not storage.exists(storage.join(root, "c-3", "sweep.json"))
    assert storage.size(storage.join(root, "missing")) == -1
    assert storage.download(found[0], tmp_path / "got" / "sweep.json")
    assert (tmp_path / "got" / "sweep.json").read_text() == "new"
    assert not storage.download(storage.join(root, "missing"), tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_mirror_copies_changes_and_resume_fetches_the_longer_journal(
    s3_bucket: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(storage, "MIRROR_EVERY_S", 0.05)
    here = tmp_path / "here"
    here.mkdir()
    (here / "j.jsonl").write_text('{"a": 1}\n')
    (here / "j.jsonl.applied").write_text("1")
    folder = storage.join(s3_bucket, "sweep-1", "journal")
    mirror = storage.Mirror(here, folder)
    deadline = time.monotonic() + 30
    while not storage.exists(storage.join(folder, "j.jsonl.applied")):
        assert time.monotonic() < deadline, "the mirror copied nothing within 30 s"
        time.sleep(0.05)
    with (here / "j.jsonl").open("a") as f:
        f.write('{"a": 2}\n')
    mirror.close()  # the last copy is made on close
    assert storage.read_text(storage.join(folder, "j.jsonl")) == '{"a": 1}\n{"a": 2}\n'

    elsewhere = tmp_path / "elsewhere"  # another machine: nothing local
    storage.fetch_mirror(folder, elsewhere, "j.jsonl")
    assert (elsewhere / "j.jsonl").read_text() == (here / "j.jsonl").read_text()
    assert (elsewhere / "j.jsonl.applied").read_text() == "1"
    # a local journal that got further than the mirror is kept
    with (elsewhere / "j.jsonl").open("a") as f:
        f.write('{"a": 3}\n')
    storage.fetch_mirror(folder, elsewhere, "j.jsonl")
    assert (elsewhere / "j.jsonl").read_text().count("\n") == 3
