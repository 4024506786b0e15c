"""Import a folder of Markdown files as a corpus, and ``searchrun corpus import``.

* Markdown document ids are the file's path relative to the folder, without
  ``.md``, lowercased, with ``/`` kept and runs of whitespace turned into ``-``
  (``Guides/Getting Started.md`` -> ``guides/getting-started``). They only
  change when a file is moved or renamed.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Optional
from urllib.parse import unquote

from .corpus import (
    _SCHEME_RE, MAX_CONTENT_CHARS, MAX_DOCUMENTS, Corpus, CorpusError, Document, _bad_id, load_corpus,
)

__all__ = ["import_markdown", "import_command", "markdown_id"]


_FENCE_RE = re.compile(r"^\s*(```|~~~)")
_HEADING1_RE = re.compile(r"^#\s+(.+?)\s*#*\s*$")
_MD_LINK_RE = re.compile(r"(!?)\[([^\]]*)\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
_WIKI_RE = re.compile(r"\[\[([^\]|#]*)(#[^\]|]*)?(?:\|([^\]]*))?\]\]")


def markdown_id(rel_path: str) -> str:
    """Stable id of a Markdown file from its path relative to the folder."""
    p = rel_path.replace(os.sep, "/")
    if p.lower().endswith(".md"):
        p = p[:-3]
    return re.sub(r"\s+", "-", p.strip()).lower()


def _md_files(folder: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.lower().endswith(".md") and not name.startswith("."):
                out.append(Path(dirpath) / name)
    return out


def _split_front_matter(text: str) -> tuple[dict[str, str], str]:
    if not text.startswith("---\n"):
        return {}, text
    end = text.find("\n---", 4)
    if end < 0:
        return {}, text
    meta = {}
    for line in text[4:end].splitlines():
        k, sep, v = line.partition(":")
        if sep and k.strip() and not k.startswith((" ", "\t")):
            meta[k.strip()] = v.strip().strip("'\"")
    rest = text[end + 4 :]
    return meta, rest[1:] if rest.startswith("\n") else rest


def _parse_markdown(text: str, stem: str) -> tuple[str, str, list[tuple[str, str]], dict[str, str]]:
    """(title, body, links as ("md" | "wiki", target) in order of appearance, front matter)."""
    meta, text = _split_front_matter(text)
    title = ""
    body_lines: list[str] = []
    links: list[tuple[str, str]] = []
    in_fence = False
    for line in text.splitlines():
        if _FENCE_RE.match(line):
            in_fence = not in_fence
            body_lines.append(line)
            continue
        if in_fence:
            body_lines.append(line)
            continue
        if not title:
            m = _HEADING1_RE.match(line)
            if m:
                title = m.group(1).strip()
                continue
        found = [(m.start(), "md", m.group(3).strip("<>")) for m in _MD_LINK_RE.finditer(line) if not m.group(1)]
        found += [(m.start(), "wiki", m.group(1).strip()) for m in _WIKI_RE.finditer(line)]
        links.extend((kind, target) for _, kind, target in sorted(found))
        line = _MD_LINK_RE.sub(lambda m: "" if m.group(1) else m.group(2), line)
        line = _WIKI_RE.sub(lambda m: (m.group(3) or m.group(1)).strip(), line)
        line = re.sub(r"^\s{0,3}#{1,6}\s+", "", line)
        body_lines.append(line)
    title = title or meta.get("title", "") or stem
    body = re.sub(r"\n{3,}", "\n\n", "\n".join(body_lines)).strip()
    return title, body, links, meta


def import_markdown(folder: Path) -> Corpus:
    """Every ``*.md`` under ``folder`` (recursively; hidden files and folders skipped) is a
    document; Markdown links ``[text](other.md)`` and wiki links ``[[other]]`` that resolve
    to another file in the folder are ``links`` edges. External links are ignored."""
    folder = Path(folder)
    source = str(folder)
    if not folder.is_dir():
        raise CorpusError(f"corpus {source}: not a folder")
    files = _md_files(folder)
    if not files:
        raise CorpusError(f"corpus {source}: has no .md files")
    if len(files) > MAX_DOCUMENTS:
        raise CorpusError(f"corpus {source}: has {len(files)} documents (limit {MAX_DOCUMENTS})")

    by_rel: dict[str, str] = {}  # normalised relative path (= id) -> id
    by_stem: dict[str, list[str]] = {}
    seen_ids: dict[str, str] = {}
    parsed = []
    for f in files:
        rel = f.relative_to(folder).as_posix()
        doc_id = markdown_id(rel)
        why = _bad_id(doc_id)
        if why:
            raise CorpusError(f"corpus {source}: {rel}: document id {json.dumps(doc_id)[:80]} {why}")
        if doc_id in seen_ids:
            raise CorpusError(f"corpus {source}: {rel} and {seen_ids[doc_id]} both map to document id {doc_id!r}")
        seen_ids[doc_id] = rel
        try:
            text = f.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as e:
            raise CorpusError(f"corpus {source}: {rel}: not valid UTF-8 (byte {e.start})") from None
        except OSError as e:
            raise CorpusError(f"corpus {source}: {rel}: cannot read: {e.strerror or e}") from None
        title, body, links, meta = _parse_markdown(text, f.stem)
        if len(body) > MAX_CONTENT_CHARS:
            raise CorpusError(f"corpus {source}: {rel}: content is {len(body)} characters long (limit {MAX_CONTENT_CHARS})")
        by_rel[doc_id] = doc_id
        by_stem.setdefault(markdown_id(f.stem), []).append(doc_id)
        parsed.append((doc_id, rel, title, body, links, meta))

    def resolve_path(rel_dir: str, target: str) -> Optional[str]:
        target = unquote(target.split("#", 1)[0].split("?", 1)[0]).strip()
        if not target:
            return None
        joined = target.lstrip("/") if target.startswith("/") else (f"{rel_dir}/{target}" if rel_dir else target)
        parts: list[str] = []
        for part in joined.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not parts:
                    return None  # outside the folder
                parts.pop()
            else:
                parts.append(part)
        return by_rel.get(markdown_id("/".join(parts)))

    unresolved = 0
    docs: dict[str, Document] = {}
    for doc_id, rel, title, body, links, meta in parsed:
        rel_dir = rel.rpartition("/")[0]
        targets: list[str] = []
        for kind, t in links:
            if kind == "md":
                if _SCHEME_RE.match(t) or t.startswith("//") or t.startswith("#"):
                    continue  # external or same-page anchor
                resolved = resolve_path(rel_dir, t)
                if resolved is None:
                    last = unquote(t.split("#", 1)[0].split("?", 1)[0]).rpartition("/")[2]
                    if last.lower().endswith(".md") or "." not in last:
                        unresolved += 1  # looked like a page in the folder, but is not there
                    continue
            else:
                if not t:
                    continue
                resolved = resolve_path(rel_dir, t) or resolve_path("", t)
                if resolved is None:
                    cands = by_stem.get(markdown_id(t.rpartition("/")[2]), [])
                    resolved = cands[0] if len(cands) == 1 else None
                if resolved is None:
                    unresolved += 1
                    continue
            targets.append(resolved)
        edges: list[str] = []
        for t in targets:
            if t != doc_id and t not in edges:
                edges.append(t)
        metadata: dict[str, Any] = {"path": rel}
        metadata.update({k: v for k, v in meta.items() if k not in ("title", "type")})
        docs[doc_id] = Document(
            id=doc_id,
            title=title,
            content=body,
            type=meta.get("type", "document") or "document",
            relationships={"links": edges} if edges else {},
            metadata=metadata,
        )
    return Corpus(docs, source=source, unresolved_links=unresolved)


# --------------------------------------------------------------------- CLI


def summarize(corpus: Corpus) -> str:
    dropped = len(corpus.missing_links()) + corpus.unresolved_links
    return f"{len(corpus)} documents, {len(corpus.edges())} edges, {dropped} missing links dropped"


def import_command(path: str, out: Optional[str] = None) -> int:
    """``searchrun corpus import PATH [-o OUT]``: read a Markdown folder or a JSON corpus, write
    the JSON graph (without missing links and self-links) to OUT or stdout, summary on stderr."""
    p = Path(path)
    try:
        if not p.exists():
            raise CorpusError(f"corpus {path}: does not exist")
        corpus = import_markdown(p) if p.is_dir() else load_corpus(str(p), "json")
    except CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    text = json.dumps(corpus.to_json(clean=True), indent=2, ensure_ascii=False) + "\n"
    if out and out != "-":
        try:
            Path(out).write_text(text, encoding="utf-8")
        except OSError as e:
            print(f"error: cannot write {out}: {e.strerror or e}", file=sys.stderr)
            return 1
        dest = out
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
        dest = "stdout"
    print(f"imported {path}: {summarize(corpus)}; wrote {dest}", file=sys.stderr)
    return 0
