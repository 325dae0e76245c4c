"""Where lake files are kept: a local directory or an S3 bucket, behind one small interface.

Keys are relative, `/`-separated paths (`ready/trades/exchange=.../dt=.../data.parquet`).
`put` makes a finished local file the key's content atomically: a rename on the same
filesystem, or an upload (an S3 object appears whole or not at all). Every failure a user
can act on is a `LakeError` whose one sentence names the path or bucket.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from rlx_assets.lib import s3


class LakeError(Exception):
    """The lake root cannot be used; the message names the path."""


def dumps(payload: object) -> bytes:
    return (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode()


class Store(Protocol):
    root: str
    slug: str

    def location(self, key: str) -> str: ...
    def put(self, local: Path, key: str) -> str: ...
    def get(self, key: str, local: Path, size: int) -> Path | None: ...
    def read_json(self, key: str) -> dict | None: ...
    def write_json(self, key: str, payload: object) -> None: ...
    def delete(self, key: str) -> None: ...
    def list(self, prefix: str, recursive: bool = True) -> list[str]: ...
    def check_writable(self) -> None: ...


def write_error(path: Path, exc: OSError, variable: str = "RLX_LAKE_ROOT") -> LakeError:
    """One sentence for a local write that failed: the file, why, and what to set."""
    why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return LakeError(f"Cannot write to {path} ({why}); free space there, or point {variable} at "
                     "a writable directory.")


def _files_under(folder: str) -> Iterator[str]:
    """The paths of the files under `folder`, at any depth, as `os.walk` finds them (it does
    not enter a linked folder) in half its time."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if not entry.is_dir():
                yield entry.path
            elif not entry.is_symlink():
                yield from _files_under(entry.path)


class LocalStore:
    """A directory; work files are written inside it, so `put` is a rename."""

    def __init__(self, root: Path) -> None:
        self.path = root
        self.root = str(root)
        self.slug = "local"

    def location(self, key: str) -> str:
        return str(self.path / key)

    def put(self, local: Path, key: str) -> str:
        target = self.path / key
        if local != target:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(local, target)
            except OSError as exc:
                raise write_error(target, exc) from exc
        return ""

    def get(self, key: str, local: Path, size: int) -> Path | None:
        path = self.path / key
        if not path.is_file() or (size >= 0 and path.stat().st_size != size):
            return None
        return path

    def read_json(self, key: str) -> dict | None:
        try:
            return json.loads((self.path / key).read_text())
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
            return None

    def write_json(self, key: str, payload: object) -> None:
        path = self.path / key
        part = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            part.write_bytes(dumps(payload))
            os.replace(part, path)
        except OSError as exc:
            with contextlib.suppress(OSError):  # the part may not exist, nor its folder
                part.unlink(missing_ok=True)
            raise write_error(path, exc) from exc

    def delete(self, key: str) -> None:
        (self.path / key).unlink(missing_ok=True)

    def list(self, prefix: str, recursive: bool = True) -> list[str]:
        """The files under `prefix` (only those directly in it unless `recursive`)."""
        folder = self.path / prefix
        if not folder.is_dir():
            return []
        if not recursive:
            return sorted(p.relative_to(self.path).as_posix() for p in folder.iterdir()
                          if p.is_file())
        root = len(str(self.path)) + 1  # no Path object per file of a long history
        return sorted(path[root:].replace(os.sep, "/") for path in _files_under(str(folder)))

    def check_writable(self) -> None:
        probe = self.path / f".write-test-{uuid.uuid4().hex}"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise write_error(self.path, exc) from exc


class S3Store:
    """A bucket and prefix. Credentials come from the standard AWS chain (environment,
    profile, instance role); `endpoint_url` (RLX_LAKE_ENDPOINT_URL, else AWS_ENDPOINT_URL)
    points it at an S3-compatible server."""

    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None = None) -> None:
        self.bucket, self.prefix, self.endpoint_url = bucket, prefix, endpoint_url
        self.root = f"s3://{bucket}/{prefix}".rstrip("/")
        self.slug = f"{bucket}_{prefix}".strip("_").replace("/", "_")
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = s3.client(endpoint_url=self.endpoint_url)
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _error(self, what: str, exc: Exception) -> LakeError:
        fault = s3.classify(exc)
        if fault.kind is s3.Kind.NO_CREDENTIALS:
            why = ("no AWS credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                   "AWS_PROFILE, or run with an instance role")
        else:  # the server's own words (code: message), or the exception's
            why = f"{fault.code}: {fault.message}".strip(": ") if fault.code else fault.message
        return LakeError(f"Cannot {what} in the lake {self.root} ({why}); check RLX_LAKE_ROOT, "
                         "the bucket's permissions and the credentials.")

    def _missing(self, exc: Exception) -> bool:
        return s3.classify(exc).kind is s3.Kind.NOT_FOUND

    def _head(self, key: str) -> dict | None:
        try:
            return s3.head(self.client, self.bucket, key)
        except Exception as exc:
            raise self._error(f"read s3://{self.bucket}/{key}", exc) from exc

    def put(self, local: Path, key: str) -> str:
        from boto3.s3.transfer import TransferConfig

        full = self._key(key)
        try:
            self.client.upload_file(str(local), self.bucket, full, Config=TransferConfig(
                multipart_threshold=64 << 20, multipart_chunksize=64 << 20, max_concurrency=4))
        except Exception as exc:
            raise self._error(f"upload {local.name} to s3://{self.bucket}/{full}", exc) from exc
        head = self._head(full)
        return head.get("ETag", "").strip('"') if head else ""

    def get(self, key: str, local: Path, size: int) -> Path | None:
        full = self._key(key)
        if local.is_file() and (size < 0 or local.stat().st_size == size):
            return local  # downloaded or uploaded by this machine earlier in the run
        head = self._head(full)
        if head is None or (size >= 0 and int(head["ContentLength"]) != size):
            return None
        part = local.with_name(f".{local.name}.{uuid.uuid4().hex}.part")
        try:
            local.parent.mkdir(parents=True, exist_ok=True)
            self.client.download_file(self.bucket, full, str(part))
            os.replace(part, local)
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise write_error(local, exc, "RLX_SCRATCH_DIR") from exc
        except Exception as exc:
            part.unlink(missing_ok=True)
            raise self._error(f"download s3://{self.bucket}/{full}", exc) from exc
        return local

    def read_json(self, key: str) -> dict | None:
        full = self._key(key)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=full)["Body"].read()
        except Exception as exc:
            if self._missing(exc):
                return None
            raise self._error(f"read s3://{self.bucket}/{full}", exc) from exc
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            return None

    def write_json(self, key: str, payload: object) -> None:
        full = self._key(key)
        try:
            self.client.put_object(Bucket=self.bucket, Key=full, Body=dumps(payload),
                                   ContentType="application/json")
        except Exception as exc:
            raise self._error(f"write s3://{self.bucket}/{full}", exc) from exc

    def delete(self, key: str) -> None:
        full = self._key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=full)
        except Exception as exc:
            if not self._missing(exc):
                raise self._error(f"delete s3://{self.bucket}/{full}", exc) from exc

    def _objects(self, prefix: str, recursive: bool = True) -> list[dict]:
        full = self._key(prefix)
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full, **({} if recursive else {"Delimiter": "/"}))
            return [o for page in pages for o in page.get("Contents", [])]
        except Exception as exc:
            raise self._error(f"list s3://{self.bucket}/{full}", exc) from exc

    def list(self, prefix: str, recursive: bool = True) -> list[str]:
        """The objects under `prefix` (only those directly in it unless `recursive`)."""
        strip = len(self._key(""))
        return sorted(o["Key"][strip:] for o in self._objects(prefix, recursive))

    def sizes_and_etags(self, prefix: str) -> dict[str, tuple[int, str]]:
        """{location: (size, ETag)} of every object under `prefix`, from the listing alone
        (what a HEAD of each would say, a thousand objects per request)."""
        return {f"s3://{self.bucket}/{o['Key']}": (int(o["Size"]), o.get("ETag", "").strip('"'))
                for o in self._objects(prefix)}

    def check_writable(self) -> None:
        probe = self._key(f".write-test-{uuid.uuid4().hex}")
        try:
            self.client.put_object(Bucket=self.bucket, Key=probe, Body=b"ok")
            self.client.delete_object(Bucket=self.bucket, Key=probe)
        except Exception as exc:
            raise self._error("write", exc) from exc
