"""Where a sweep's folder lives: a local path (one machine, or a mount every node shares) or
object storage that every node reaches (`s3://bucket/prefix`, `gs://bucket/prefix`).

The folder holds Tune's experiment (trial states, checkpoints), `sweep.json` and, when it is
remote, a mirror of the tracker's journal. Every read and write goes through `pyarrow.fs`,
the layer Ray Tune itself uses, so divsweep reaches exactly what Tune reaches. Credentials
come only from each process's environment or instance role (the AWS/GCS SDK chains): no key
is ever in a spec, a URI, a pickled filesystem, an MLflow param or tag.

A custom S3 endpoint (`AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`: MinIO, a local test server)
is read on the driver and carried to the workers inside the filesystem Tune pickles, so worker
nodes need only their credentials, not the endpoint setting.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

from pyarrow import fs as pafs

from divsweep.errors import UserError

REMOTE_SCHEMES = ("s3://", "gs://")
# How often a remote sweep's journal is copied to its folder (and once more on close):
# a driver machine lost for good loses at most this much of the journal's tail.
MIRROR_EVERY_S = 5.0
PREFLIGHT_DIR = ".divsweep-preflight"
PREFLIGHT_TIMEOUT_S = 60.0


def normalize(value: str | Path) -> str:
    """A storage location as divsweep keeps it: `s3://…`/`gs://…` as given (no trailing /),
    `file://…` or a path made absolute (Ray workers run in other directories)."""
    text = str(value).strip()
    if text.startswith(REMOTE_SCHEMES):
        bucket = text.split("://", 1)[1].strip("/")
        if not bucket:
            raise ValueError(f"{text!r} names no bucket")
        return text.rstrip("/")
    if text.startswith("file://"):
        text = text.removeprefix("file://")
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        raise ValueError(
            f"unsupported storage scheme {scheme!r}: use s3://, gs://, file:// or a path"
        )
    return str(Path(text).expanduser().resolve())


def is_remote(location: str) -> bool:
    return location.startswith(REMOTE_SCHEMES)


def join(location: str, *parts: str) -> str:
    return "/".join([location.rstrip("/"), *parts])


def name(location: str) -> str:
    """The last component of a location (a sweep folder's name)."""
    return location.rstrip("/").rsplit("/", 1)[-1]


def filesystem(location: str) -> pafs.FileSystem | None:
    """The filesystem Tune must be given (`storage_filesystem`) for `location`, or None when
    Tune's own resolution of the URI reaches it (local paths, S3/GCS at their usual endpoints)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not location.startswith("s3://") or not endpoint:
        return None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return pafs.PyFileSystem(_s3_folders(endpoint, region or "us-east-1"))


@functools.lru_cache(maxsize=8)
def _s3_folders(endpoint: str, region: str) -> S3Folders:
    return S3Folders(endpoint, region)


class S3Folders(pafs.FileSystemHandler):
    """pyarrow's S3 filesystem as a sweep's storage wants it, in two ways (bench_storage, 100
    trials against a local S3 server: S3/local sweep time 1.58 -> 1.17-1.20, requests per
    trial 24 -> 9):

    - Unpickling builds nothing: Tune pickles its storage filesystem into every trial and
      unpickles it several times per trial on the driver, and each unpickled S3FileSystem
      builds a new AWS SDK client (~11 ms of CPU). This handler pickles as its endpoint and
      region and unpickles to the one client of this process.
    - `create_dir` writes nothing: an object store has no folders (a folder is there while a
      file under it is, and every listing reads it so), but pyarrow's S3 puts an empty marker
      object per path level, plus a bucket check, on every call; Tune calls it for every trial
      folder at every experiment snapshot and every checkpoint, over half a sweep's requests.

    Everything else is the S3 filesystem's own. No key is held: each process's SDK finds its
    own (environment, profile, instance role)."""

    def __init__(self, endpoint: str, region: str):
        self.endpoint, self.region = endpoint, region
        # delayed open: a small file (a checkpoint's files, the journal) goes up in one PUT on
        # close instead of a three-request multipart upload; a failed write still raises, on close
        self.s3 = pafs.S3FileSystem(
            endpoint_override=endpoint, region=region, allow_delayed_open=True
        )

    def __reduce__(self):
        return _s3_folders, (self.endpoint, self.region)

    def __eq__(self, other) -> bool:
        return isinstance(other, S3Folders) and (self.endpoint, self.region) == (
            other.endpoint,
            other.region,
        )

    def __ne__(self, other) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash((self.endpoint, self.region))

    def get_type_name(self) -> str:
        return "s3"

    def normalize_path(self, path):
        return self.s3.normalize_path(path)

    def get_file_info(self, paths):
        return self.s3.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.s3.get_file_info(selector)

    def create_dir(self, path, recursive) -> None:
        pass  # see the class docstring: a folder needs no object of its own

    def delete_dir(self, path) -> None:
        self.s3.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False) -> None:
        self.s3.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise PermissionError("divsweep never empties a whole object store")

    def delete_file(self, path) -> None:
        self.s3.delete_file(path)

    def move(self, src, dest) -> None:
        self.s3.move(src, dest)

    def copy_file(self, src, dest) -> None:
        self.s3.copy_file(src, dest)

    def open_input_stream(self, path):
        return self.s3.open_input_stream(path)

    def open_input_file(self, path):
        return self.s3.open_input_file(path)

    def open_output_stream(self, path, metadata):
        return self.s3.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path, metadata):
        return self.s3.open_append_stream(path, metadata=metadata)


def location_of(fs: pafs.FileSystem, path: str) -> str:
    """A path on a filesystem Tune hands back (a checkpoint's) as a storage location: the
    path, with the scheme of an object store put back."""
    # "py::s3": S3Folders, as a PyFileSystem names it
    schemes = {"s3": "s3://", "py::s3": "s3://", "gcs": "gs://"}
    return schemes.get(fs.type_name, "") + path


def tune_path(location: str) -> tuple[str, pafs.FileSystem | None]:
    """(storage_path, storage_filesystem) for Tune: with a filesystem of our own, Tune wants
    the path without its scheme."""
    custom = filesystem(location)
    return (location if custom is None else _strip(location)), custom


def resolve(location: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and path of `location`."""
    custom = filesystem(location)
    if custom is not None:
        return custom, _strip(location)
    if not is_remote(location):
        return pafs.LocalFileSystem(), location
    try:
        return pafs.FileSystem.from_uri(location)
    except Exception as err:
        raise UserError(f"cannot open storage {location}: {err}") from None


def _strip(location: str) -> str:
    return location.split("://", 1)[1]


def write_text(location: str, text: str) -> None:
    """Write a small file whole: readers see the old or the new content, never a torn one
    (an object store's PUT is atomic; locally a rename makes it so)."""
    fs, path = resolve(location)
    if isinstance(fs, pafs.LocalFileSystem):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(path).with_name(Path(path).name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        return
    with fs.open_output_stream(path) as out:
        out.write(text.encode())


def read_text(location: str) -> str:
    fs, path = resolve(location)
    with fs.open_input_stream(path) as f:
        return f.read().decode()


def exists(location: str) -> bool:
    fs, path = resolve(location)
    return fs.get_file_info(path).type == pafs.FileType.File


def copy_to(local: Path, location: str) -> None:
    fs, path = resolve(location)
    pafs.copy_files(str(local), path, destination_filesystem=fs)


def download(location: str, local: Path) -> bool:
    """Copy one file to `local` in a single open (no existence check first: each check is a
    round trip to object storage); False, with nothing written, where there is no such file."""
    fs, path = resolve(location)
    try:
        source = fs.open_input_stream(path)
    except FileNotFoundError:
        return False
    local.parent.mkdir(parents=True, exist_ok=True)
    with source, local.open("wb") as out:
        while chunk := source.read(1 << 20):
            out.write(chunk)
    return True


def copy_from(location: str, local: Path) -> None:
    """Copy one file that must exist (one listed a moment before) to `local`."""
    if not download(location, local):
        raise FileNotFoundError(f"{location} is gone")


def size(location: str) -> int:
    """A file's size in bytes; -1 when it does not exist."""
    fs, path = resolve(location)
    info = fs.get_file_info(path)
    return info.size if info.type == pafs.FileType.File else -1


def find(root: str, filename: str) -> list[str]:
    """Every `root/*/filename`, newest first."""
    fs, path = resolve(root)
    folders = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    wanted = [f"{f.path}/{filename}" for f in folders if f.type == pafs.FileType.Directory]
    found = [f for f in fs.get_file_info(wanted) if f.type == pafs.FileType.File]
    found.sort(key=lambda f: f.mtime_ns or 0, reverse=True)
    scheme = root[: len(root) - len(path)]  # "s3://" (pyarrow paths have none) or ""
    return [scheme + f.path for f in found]


# --- preflight: every alive node sees and writes the storage, before any trial ---------------


def _probe(marker: str, expected: str, fs: pafs.FileSystem | None) -> str | None:
    """On one node: read the driver's marker and write this node's answer beside it.
    Returns None, or what went wrong (a node that cannot see the storage)."""
    import ray

    try:
        system, path = (fs, _strip(marker)) if fs is not None else resolve(marker)
        with system.open_input_stream(path) as f:
            if f.read().decode() != expected:
                return "it reads a different marker (another machine's folder of that name?)"
        node = ray.get_runtime_context().get_node_id()
        with system.open_output_stream(f"{path}.{node}") as out:
            out.write(b"ok")
    except Exception as err:  # reported per node: which node, which error
        return f"{type(err).__name__}: {err}"
    return None


def preflight(location: str, timeout_s: float = PREFLIGHT_TIMEOUT_S) -> None:
    """Check, with a tiny task pinned to each alive Ray node, that every node reads a marker
    this driver wrote to `location` and can write beside it; fail with one line naming the
    storage and the node otherwise. A single-node Ray that is this driver's own is skipped:
    the driver's own write already proved it."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n["Alive"]]
    here = ray.get_runtime_context().get_node_id()
    if [n["NodeID"] for n in nodes] == [here]:
        return
    token = uuid.uuid4().hex
    marker = join(location, PREFLIGHT_DIR, token)
    try:
        write_text(marker, token)
    except Exception as err:
        raise UserError(f"cannot write to storage {location} from this driver: {err}") from None
    probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
    custom = filesystem(location)
    refs = {
        probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(marker, token, custom): n
        for n in nodes
    }
    try:
        ready, pending = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
        for ref in ready:
            problem = ray.get(ref)
            if problem is not None:
                node = refs[ref]
                raise UserError(
                    f"storage {location} is not usable from Ray node {node['NodeID']} "
                    f"({node['NodeManagerAddress']}): {problem}; every node must reach the "
                    "storage_path: use s3://…, gs://… or a filesystem mounted on every node"
                )
        if pending:
            node = refs[pending[0]]
            raise UserError(
                f"Ray node {node['NodeID']} ({node['NodeManagerAddress']}) did not answer the "
                f"storage check of {location} within {timeout_s:.0f} s"
            )
    finally:
        _remove_markers(join(location, PREFLIGHT_DIR), token)


def _remove_markers(folder: str, token: str) -> None:
    """This check's marker and the nodes' answers (other drivers' checks may be running)."""
    fs, path = resolve(folder)
    for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
        if name(info.path).startswith(token):
            fs.delete_file(info.path)


# --- the journal mirror ------------------------------------------------------------------


class Mirror:
    """Copies the files of a local folder (the tracker's journal and its applied mark) to a
    remote folder every MIRROR_EVERY_S, those that changed, and once more on `close`. A driver
    machine lost for good loses at most the last MIRROR_EVERY_S of records that MLflow had not
    yet received; a killed driver on a surviving machine loses none (the local journal)."""

    def __init__(self, local: Path, folder: str):
        self.local, self.folder = local, folder
        self.sent: dict[str, tuple[int, int]] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="divsweep-mirror", daemon=True)
        self.thread.start()

    def sync(self) -> None:
        for path in sorted(self.local.iterdir()):
            stat = path.stat()
            seen = (stat.st_size, stat.st_mtime_ns)
            if path.is_file() and self.sent.get(path.name) != seen:
                copy_to(path, join(self.folder, path.name))
                self.sent[path.name] = seen

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.sync()

    def _loop(self) -> None:
        while not self.stopping.wait(MIRROR_EVERY_S):
            # storage away for a moment: the local journal is whole, a later copy catches up
            with contextlib.suppress(OSError):
                self.sync()


def fetch_mirror(folder: str, local: Path, main: str) -> None:
    """Before a resume: where the mirrored `main` file (the journal) is longer than the local
    one, or there is none here (another machine, another working directory), bring every
    mirrored file into `local`; a local journal that got further is kept as it is."""
    here = local / main
    if size(join(folder, main)) <= (here.stat().st_size if here.is_file() else -1):
        return
    fs, path = resolve(folder)
    for info in fs.get_file_info(pafs.FileSelector(path)):
        if info.type == pafs.FileType.File:
            copy_from(join(folder, name(info.path)), local / name(info.path))


@contextlib.contextmanager
def local_view(location: str, prefix: str) -> Iterator[str]:
    """A local folder holding `location`'s files whose names start with `prefix` (the folder
    itself when it is local): for readers that only open local files, such as Tune's
    `Searcher.restore_from_dir`."""
    if not is_remote(location):
        yield location
        return
    fs, path = resolve(location)
    with tempfile.TemporaryDirectory(prefix="divsweep-") as local:
        for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
            if info.type == pafs.FileType.File and name(info.path).startswith(prefix):
                copy_from(join(location, name(info.path)), Path(local) / name(info.path))
        yield local
