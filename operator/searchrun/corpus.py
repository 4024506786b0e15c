"""The document graph a SearchRun searches: parse, import and load it.

A corpus is ``{"documents": {id: {id, title, content, type, relationships:
{kind: [ids]}, metadata}}}``. It is accepted as is: unknown fields in a
document are ignored, links to missing documents are kept in the data but never
followed, and self-links are never followed. A folder of Markdown files can be
imported too (:mod:`searchrun.corpus_markdown`): each ``.md`` file is a document and its
links are edges.

Decisions worth knowing:

* A document's inner ``id`` may be omitted (the key is used). If it is present
  and differs from its key the corpus is rejected: silently picking one would
  make links point at the wrong document.
* Every error is a :class:`CorpusError` whose message names the source and what
  is wrong, never a traceback.
"""

from __future__ import annotations

import json
import re
import unicodedata
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import unquote, urlparse

from pydantic import BaseModel, ConfigDict, ValidationError

MAX_DOCUMENTS = 200_000
MAX_DOC_ID_CHARS = 200
MAX_CONTENT_CHARS = 1_000_000

BUILTIN_CORPORA = {"sample": "sample-corpus.json"}

__all__ = [
    "MAX_DOCUMENTS",
    "MAX_DOC_ID_CHARS",
    "MAX_CONTENT_CHARS",
    "CorpusError",
    "Document",
    "Corpus",
    "parse_corpus",
    "load_corpus",
]


class CorpusError(ValueError):
    """A corpus that cannot be read or is malformed; the message names the source."""


class Document(BaseModel):
    """One node of the graph. Unknown fields are accepted and dropped."""

    model_config = ConfigDict(extra="ignore")

    id: str
    title: str = ""
    content: str = ""
    type: str = "document"
    relationships: dict[str, list[str]] = {}
    metadata: dict[str, Any] = {}

    @property
    def text(self) -> str:
        """Title and content, as an agent reads them."""
        if self.title and self.content:
            return f"{self.title}\n\n{self.content}"
        return self.title or self.content


class Corpus:
    """Documents by id, with link resolution that ignores missing targets and self-links."""

    def __init__(self, documents: dict[str, Document], source: str = "", unresolved_links: int = 0):
        self.documents = documents
        self.source = source
        # links an importer saw but could not resolve (Markdown links to absent files)
        self.unresolved_links = unresolved_links
        self._children: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self.documents)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self.documents

    def __repr__(self) -> str:
        return f"Corpus({len(self)} documents from {self.source or '<memory>'})"

    def get(self, doc_id: str) -> Optional[Document]:
        return self.documents.get(doc_id)

    def ids(self) -> list[str]:
        return list(self.documents)

    def children(self, doc_id: str) -> list[str]:
        """Targets of all relationships of ``doc_id``, in order of appearance over kinds,
        deduplicated, without self-links and links to missing documents."""
        cached = self._children.get(doc_id)
        if cached is not None:
            return list(cached)
        doc = self.documents.get(doc_id)
        out: list[str] = []
        if doc is not None:
            seen = {doc_id}
            for targets in doc.relationships.values():
                for t in targets:
                    if t not in seen and t in self.documents:
                        seen.add(t)
                        out.append(t)
        self._children[doc_id] = out
        return list(out)

    def links(self, doc_id: str) -> list[tuple[str, str]]:
        """(relationship kind, target) for each followable child of ``doc_id``, in the order of
        :meth:`children`; a target linked under several kinds keeps its first kind."""
        doc = self.documents.get(doc_id)
        if doc is None:
            return []
        out: list[tuple[str, str]] = []
        seen = {doc_id}
        for kind, targets in doc.relationships.items():
            for t in targets:
                if t not in seen and t in self.documents:
                    seen.add(t)
                    out.append((kind, t))
        return out

    def edges(self) -> list[tuple[str, str]]:
        """Every followable (source, target) pair."""
        return [(d, c) for d in self.documents for c in self.children(d)]

    def missing_links(self) -> list[tuple[str, str, str]]:
        """(source, kind, target) for every link to a document that is not in the corpus."""
        out = []
        for d, doc in self.documents.items():
            for kind, targets in doc.relationships.items():
                out.extend((d, kind, t) for t in targets if t not in self.documents)
        return out

    def to_json(self, clean: bool = False) -> dict:
        """The JSON shape :func:`parse_corpus` accepts. With ``clean``, links to missing
        documents, self-links and duplicate targets are left out."""
        docs = {}
        for d, doc in self.documents.items():
            data = doc.model_dump()
            if clean:
                rel: dict[str, list[str]] = {}
                for kind, targets in doc.relationships.items():
                    kept = []
                    for t in targets:
                        if t != d and t in self.documents and t not in kept:
                            kept.append(t)
                    if kept:
                        rel[kind] = kept
                data["relationships"] = rel
            docs[d] = data
        return {"documents": docs}


# ----------------------------------------------------------------- parsing


def _bad_id(doc_id: Any) -> Optional[str]:
    """Why ``doc_id`` is not acceptable, or None."""
    if not isinstance(doc_id, str):
        return "must be a string"
    if not doc_id:
        return "must not be empty"
    if len(doc_id) > MAX_DOC_ID_CHARS:
        return f"is {len(doc_id)} characters long (limit {MAX_DOC_ID_CHARS})"
    for ch in doc_id:
        if unicodedata.category(ch) == "Cc":
            return f"contains a control character (U+{ord(ch):04X})"
    return None


def _show(doc_id: str) -> str:
    return repr(doc_id)[1:-1] if len(doc_id) <= 60 else repr(doc_id[:57])[1:-1] + "..."


def _document(key: str, raw: Any, source: str) -> Document:
    where = f"corpus {source}: documents.{_show(key)}"
    if not isinstance(raw, dict):
        raise CorpusError(f"{where} must be an object, not {type(raw).__name__}")
    raw = {k: v for k, v in raw.items() if v is not None}
    inner = raw.get("id", key)
    if inner != key:
        raise CorpusError(
            f"{where}.id is {json.dumps(inner)[:80]} but its key is {json.dumps(key)[:80]}; they must agree (or omit id)"
        )
    raw["id"] = key
    rel = raw.get("relationships", {})
    if not isinstance(rel, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(t, str) for t in v) for k, v in rel.items()
    ):
        raise CorpusError(f"{where}.relationships must map a kind to a list of ids")
    if not isinstance(raw.get("metadata", {}), dict):
        raise CorpusError(f"{where}.metadata must be an object")
    for field in ("title", "content", "type"):
        if field in raw and not isinstance(raw[field], str):
            raise CorpusError(f"{where}.{field} must be a string, not {type(raw[field]).__name__}")
    content = raw.get("content", "")
    if len(content) > MAX_CONTENT_CHARS:
        raise CorpusError(f"{where}.content is {len(content)} characters long (limit {MAX_CONTENT_CHARS})")
    try:
        return Document.model_validate(raw)
    except ValidationError as e:  # pragma: no cover - the checks above cover the schema
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise CorpusError(f"{where}.{loc}: {err['msg']}") from None


def parse_corpus(data: bytes, source: str) -> Corpus:
    """Parse the JSON document graph; raise :class:`CorpusError` naming ``source`` and the problem."""
    if isinstance(data, str):
        text = data
    else:
        try:
            text = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise CorpusError(f"corpus {source}: not valid UTF-8 (byte {e.start})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise CorpusError(f"corpus {source}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise CorpusError(f"corpus {source}: invalid JSON: nested too deeply") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("documents"), dict):
        raise CorpusError(f'corpus {source}: expected an object with a "documents" object mapping ids to documents')
    raw_docs = obj["documents"]
    if not raw_docs:
        raise CorpusError(f"corpus {source}: has no documents")
    if len(raw_docs) > MAX_DOCUMENTS:
        raise CorpusError(f"corpus {source}: has {len(raw_docs)} documents (limit {MAX_DOCUMENTS})")
    docs: dict[str, Document] = {}
    for key, raw in raw_docs.items():
        why = _bad_id(key)
        if why:
            raise CorpusError(f"corpus {source}: document id {json.dumps(key)[:80]} {why}")
        docs[key] = _document(key, raw, source)
    return Corpus(docs, source=source)


# ----------------------------------------------------------------- loading

_SCHEME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _read_builtin(name: str) -> Corpus:
    fname = BUILTIN_CORPORA.get(name)
    if fname is None:
        raise CorpusError(f"corpus builtin:{name}: unknown builtin corpus (available: {', '.join('builtin:' + n for n in BUILTIN_CORPORA)})")
    try:
        data = (resources.files("searchrun") / "data" / fname).read_bytes()
    except (OSError, ModuleNotFoundError) as e:
        raise CorpusError(f"corpus builtin:{name}: not installed with the package ({e})") from None
    return parse_corpus(data, f"builtin:{name}")


def _local_path(uri: str, base_dir: Optional[Path]) -> Path:
    if uri.startswith("file://"):
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise CorpusError(f"corpus {uri}: file:// URIs must be absolute (file:///path), not on host {parsed.netloc!r}")
        return Path(unquote(parsed.path))
    p = Path(uri).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return p


def load_corpus(
    uri: str,
    fmt: str = "json",
    base_dir: Optional[Path] = None,
    read_uri: Optional[Callable[[str], bytes]] = None,
) -> Corpus:
    """Load the corpus a SearchRun names.

    ``builtin:sample`` is the packaged sample; ``file:///path`` or a path (relative to
    ``base_dir``, else the working directory) is a JSON file (``fmt="json"``) or a Markdown
    folder (``fmt="markdown"``); ``s3://bucket/key`` is read through ``read_uri`` (the
    artifact store's reader), JSON only.
    """
    fmt = getattr(fmt, "value", fmt) or "json"
    if fmt not in ("json", "markdown"):
        raise CorpusError(f"corpus {uri}: unknown format {fmt!r} (json or markdown)")
    if uri.startswith("builtin:"):
        if fmt != "json":
            raise CorpusError(f"corpus {uri}: builtin corpora are json, not {fmt}")
        return _read_builtin(uri[len("builtin:") :])
    if uri.startswith("s3://"):
        if fmt != "json":
            raise CorpusError(f"corpus {uri}: a markdown folder cannot be read from s3; import it to JSON first (searchrun corpus import)")
        if read_uri is None:
            raise CorpusError(f"corpus {uri}: no artifact store reader configured for s3:// URIs")
        try:
            data = read_uri(uri)
        except CorpusError:
            raise
        except Exception as e:
            raise CorpusError(f"corpus {uri}: cannot read: {e}") from None
        return parse_corpus(data, uri)
    if _SCHEME_RE.match(uri) and not uri.startswith("file://") and not re.match(r"^[a-zA-Z]:[\\/]", uri):
        raise CorpusError(f"corpus {uri}: unsupported URI scheme (use builtin:NAME, s3://, file:// or a path)")

    path = _local_path(uri, base_dir)
    if not path.exists():
        raise CorpusError(f"corpus {uri}: {path} does not exist")
    if fmt == "markdown":
        if not path.is_dir():
            raise CorpusError(f"corpus {uri}: {path} is not a folder (format markdown needs a folder of .md files)")
        corpus = corpus_markdown.import_markdown(path)
        corpus.source = uri
        return corpus
    if path.is_dir():
        raise CorpusError(f"corpus {uri}: {path} is a folder; set format: markdown to import its .md files")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CorpusError(f"corpus {uri}: cannot read {path}: {e.strerror or e}") from None
    return parse_corpus(data, uri)


# Last: the Markdown import builds on the model above, and load_corpus calls it. A module import
# at the end works whichever of the two modules is imported first.
from . import corpus_markdown  # noqa: E402
