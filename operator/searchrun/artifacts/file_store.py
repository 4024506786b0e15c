"""``file:///abs/dir``: artifacts as files, written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import quote

from .base import ArtifactError, ArtifactExists, ArtifactNotFound, ArtifactStore
from .keys import _validate_prefix, validate_key


class FileStore(ArtifactStore):
    """Artifacts as files under ``root``. Writes go to a temp file in the same directory,
    then are moved into place atomically (a hard link for write-once, ``os.replace`` for
    overwrite), so readers never see a partial file."""

    _TMP_PREFIX = ".tmp-"

    def __init__(self, root: Path | str):
        self.root = Path(root).absolute()
        self.uri = "file://" + quote(self.root.as_posix())

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def uri_for(self, key: str) -> str:
        return "file://" + quote(self._path(key).as_posix())

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/json", overwrite: bool = False) -> str:
        return self._put(key, [self._check_data(data)], overwrite)

    def put_parts(self, key: str, parts: list, content_type: str = "application/json", overwrite: bool = False) -> tuple[str, int]:
        """The parts are written in turn to the temporary file, so a 12 MB lineage is not joined
        in memory first."""
        parts = [self._check_data(p) for p in parts]
        return self._put(key, parts, overwrite), sum(len(p) for p in parts)

    def _put(self, key: str, parts: list, overwrite: bool) -> str:
        path = self._path(key)
        uri = self.uri_for(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not overwrite and path.exists():
                return self._same_or_raise(key, path, parts, uri)
            fd, tmp = tempfile.mkstemp(prefix=self._TMP_PREFIX, dir=path.parent)
            try:
                os.fchmod(fd, 0o644)  # mkstemp makes 0600; artifacts are meant to be shared
                with os.fdopen(fd, "wb") as f:
                    f.writelines(parts)
                    f.flush()
                    os.fsync(f.fileno())
                if overwrite:
                    os.replace(tmp, path)
                    tmp = None
                else:
                    try:
                        # Atomic create-if-absent: link fails if the target exists.
                        os.link(tmp, path)
                    except FileExistsError:
                        return self._same_or_raise(key, path, parts, uri)
                    except OSError:
                        # Filesystem without hard links: check-then-replace (racy, best effort).
                        if path.exists():
                            return self._same_or_raise(key, path, parts, uri)
                        os.replace(tmp, path)
                        tmp = None
            finally:
                if tmp is not None:
                    try:
                        os.unlink(tmp)
                    except FileNotFoundError:
                        pass
        except ArtifactError:
            raise
        except OSError as e:
            raise ArtifactError(f"file put failed for {uri}: {e.strerror or e}") from e
        return uri

    def _same_or_raise(self, key: str, path: Path, parts: list, uri: str) -> str:
        try:
            existing = path.read_bytes()
        except OSError as e:
            raise ArtifactError(f"file get failed for {uri}: {e.strerror or e}") from e
        if existing == b"".join(parts):  # a write-once artifact written again: the same bytes are fine
            return uri
        raise ArtifactExists(f"artifact {key} already exists at {uri} with different content")

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as e:
            raise ArtifactNotFound(f"artifact {key} not found in {self.uri}") from e
        except IsADirectoryError as e:
            raise ArtifactNotFound(f"artifact {key} not found in {self.uri} (it is a directory)") from e
        except OSError as e:
            raise ArtifactError(f"file get failed for {self.uri_for(key)}: {e.strerror or e}") from e

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        prefix = _validate_prefix(prefix, allow_empty=True)
        # Walk only the deepest directory the prefix pins down.
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*head.split("/")) if head else self.root
        if not start.is_dir():
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            dirnames[:] = [d for d in dirnames if (rel_dir + d + "/").startswith(prefix) or prefix.startswith(rel_dir + d + "/")]
            for name in filenames:
                key = rel_dir + name
                if name.startswith(self._TMP_PREFIX) or not key.startswith(prefix):
                    continue
                try:
                    validate_key(key)
                except ValueError:
                    continue  # not something this store wrote
                keys.append(key)
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        prefix = _validate_prefix(prefix, allow_empty=False)
        count = 0
        deleted = []
        for key in self.list(prefix):
            try:
                self._path(key).unlink()
                deleted.append(key)
                count += 1
            except FileNotFoundError:
                pass
            except OSError as e:
                raise ArtifactError(f"file delete failed for {self.uri_for(key)}: {e.strerror or e}") from e
        # Remove directories left empty (deepest first), never the root itself.
        dirs = {self._path(k).parent for k in deleted}
        for d in sorted(dirs, key=lambda p: -len(p.parts)):
            while d != self.root and self.root in d.parents:
                try:
                    d.rmdir()
                except OSError:
                    break
                d = d.parent
        return count
