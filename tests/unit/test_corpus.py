"""Corpus parsing, Markdown import, loading and the sample corpus."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from searchrun import corpus as corpus_mod
from searchrun.corpus import (
    MAX_CONTENT_CHARS,
    MAX_DOC_ID_CHARS,
    Corpus,
    CorpusError,
    load_corpus,
    parse_corpus,
)
from searchrun.corpus_markdown import import_command, import_markdown

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "corpus" / "sample-corpus.json"
MARKDOWN = REPO / "examples" / "corpus" / "markdown"


def dump(docs) -> bytes:
    return json.dumps({"documents": docs}).encode()


# ------------------------------------------------------------------ parsing


def test_parse_accepts_the_documented_shape_as_is():
    c = parse_corpus(
        dump(
            {
                "a": {"id": "a", "title": "A", "content": "alpha", "type": "paper",
                      "relationships": {"cites": ["b"], "related": ["c"]}, "metadata": {"year": 2020}},
                "b": {"title": "B"},  # inner id omitted: the key is used
                "c": {"id": "c", "extra": "ignored", "title": None},
            }
        ),
        "mem.json",
    )
    assert len(c) == 3
    a = c.get("a")
    assert (a.id, a.title, a.content, a.type, a.metadata) == ("a", "A", "alpha", "paper", {"year": 2020})
    assert c.get("b").id == "b" and c.get("b").type == "document"
    assert c.get("c").title == "" and not hasattr(c.get("c"), "extra")
    assert c.get("missing") is None
    assert c.children("a") == ["b", "c"]


def test_children_ignore_missing_links_drop_self_links_and_dedupe_in_order():
    c = parse_corpus(
        dump(
            {
                "a": {"relationships": {"related": ["a", "ghost", "c", "b"], "cites": ["b", "d", "a"]}},
                "b": {"relationships": {"part_of": ["a"]}},  # a <-> b cycle is fine
                "c": {},
                "d": {"relationships": {"related": ["d"]}},
            }
        ),
        "mem",
    )
    assert c.children("a") == ["c", "b", "d"]
    assert c.children("b") == ["a"]
    assert c.children("d") == []
    assert c.children("nope") == []
    assert c.missing_links() == [("a", "related", "ghost")]
    assert len(c.edges()) == 4
    clean = c.to_json(clean=True)["documents"]
    assert clean["a"]["relationships"] == {"related": ["c", "b"], "cites": ["b", "d"]}
    assert clean["d"]["relationships"] == {}
    # the raw form round-trips, missing links included
    again = parse_corpus(json.dumps(c.to_json()).encode(), "again")
    assert again.get("a").relationships == c.get("a").relationships


def test_utf8_bom_and_unicode_ids_are_fine():
    data = "\ufeff".encode() + json.dumps({"documents": {"résumé-λ": {"title": "Ünïcode"}}}).encode()
    c = parse_corpus(data, "bom.json")
    assert c.ids() == ["résumé-λ"]


def _reject(data: bytes, *fragments: str, source: str = "examples/x.json"):
    with pytest.raises(CorpusError) as ei:
        parse_corpus(data, source)
    msg = str(ei.value)
    assert msg.startswith(f"corpus {source}: "), msg
    for f in fragments:
        assert f in msg, msg
    assert "Traceback" not in msg
    return msg


@pytest.mark.parametrize(
    "data, fragments",
    [
        (b"{not json", ["invalid JSON at line 1 column 2"]),
        (b'{"documents": {"a": {}}', ["invalid JSON"]),
        (b"\xff\xfe\x00garbage", ["not valid UTF-8"]),
        (b"[]", ['"documents" object']),
        (b'{"docs": {}}', ['"documents" object']),
        (b'{"documents": []}', ['"documents" object']),
        (b'{"documents": {}}', ["has no documents"]),
        (dump({"a": "text"}), ["documents.a must be an object, not str"]),
        (dump({"doc-3": {"relationships": {"related": "b"}}}), ["documents.doc-3.relationships must map a kind to a list of ids"]),
        (dump({"doc-3": {"relationships": ["b"]}}), ["documents.doc-3.relationships must map a kind to a list of ids"]),
        (dump({"doc-3": {"relationships": {"related": [1, 2]}}}), ["documents.doc-3.relationships must map a kind to a list of ids"]),
        (dump({"a": {"metadata": [1]}}), ["documents.a.metadata must be an object"]),
        (dump({"a": {"title": 5}}), ["documents.a.title must be a string, not int"]),
        (dump({"a": {"content": ["x"]}}), ["documents.a.content must be a string, not list"]),
        (dump({"a": {"id": "b"}}), ['documents.a.id is "b" but its key is "a"']),
        (dump({"": {}}), ['document id "" must not be empty']),
        (dump({"x" * (MAX_DOC_ID_CHARS + 1): {}}), [f"is {MAX_DOC_ID_CHARS + 1} characters long (limit {MAX_DOC_ID_CHARS})"]),
        (dump({"bad\nid": {}}), ["contains a control character (U+000A)"]),
        (dump({"bad\x00id": {}}), ["contains a control character (U+0000)"]),
        (dump({"big": {"content": "x" * (MAX_CONTENT_CHARS + 1)}}), [f"documents.big.content is {MAX_CONTENT_CHARS + 1} characters long (limit {MAX_CONTENT_CHARS})"]),
    ],
)
def test_rejections_name_the_source_and_the_problem(data, fragments):
    _reject(data, *fragments)


def test_id_of_exactly_the_limit_is_accepted():
    c = parse_corpus(dump({"x" * MAX_DOC_ID_CHARS: {}}), "mem")
    assert len(c) == 1


def test_too_many_documents(monkeypatch):
    monkeypatch.setattr(corpus_mod, "MAX_DOCUMENTS", 3)
    parse_corpus(dump({str(i): {} for i in range(3)}), "ok")
    _reject(dump({str(i): {} for i in range(4)}), "has 4 documents (limit 3)")


def test_limits_are_module_constants():
    assert corpus_mod.MAX_DOCUMENTS == 200_000
    assert corpus_mod.MAX_DOC_ID_CHARS == 200
    assert corpus_mod.MAX_CONTENT_CHARS == 1_000_000


# ----------------------------------------------------------------- markdown


def test_markdown_import_of_the_example_folder():
    c = import_markdown(MARKDOWN)
    assert set(c.ids()) == {"index", "grind-size", "water", "beans/roast-levels", "methods/espresso", "methods/pour-over"}
    idx = c.get("index")
    assert idx.title == "Home coffee brewing"
    assert not idx.content.startswith("#") and "Home coffee brewing" not in idx.content.splitlines()[0]
    # links become their text in the content; images and URLs disappear
    assert "[Espresso]" not in idx.content and "Espresso" in idx.content and "img/cup.png" not in idx.content
    # markdown links (with anchors, ./ and ../), wiki links with aliases, in order of appearance
    assert c.children("index") == ["beans/roast-levels", "grind-size", "water", "methods/espresso", "methods/pour-over"]
    # [[Grind Size]] resolves case- and space-insensitively; [[methods/espresso]] by path
    assert c.children("methods/pour-over") == ["grind-size", "water", "methods/espresso"]
    # [[espresso]] from another folder resolves by its unique file name
    assert "methods/espresso" in c.children("beans/roast-levels")
    # the self-link [[roast-levels]] is dropped
    assert "beans/roast-levels" not in c.children("beans/roast-levels")
    # a link inside a fenced code block is not an edge; external links are ignored
    assert c.children("water") == ["index"]
    # front matter: title and type
    water = c.get("water")
    assert (water.title, water.type) == ("Water for coffee", "article")
    assert water.metadata == {"path": "water.md"}
    # the link to methods/french-press.md (absent) is counted, not followed
    assert c.unresolved_links == 1
    assert c.missing_links() == []
    assert all(doc.relationships.keys() <= {"links"} for doc in c.documents.values())


def test_markdown_import_details(tmp_path):
    (tmp_path / "Sub Dir").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.md").write_text("# hidden\n")
    (tmp_path / "Sub Dir" / "Note One.md").write_text("no heading here, see [[Top]] and [x](../top.md#a) and [y](http://e.com/top.md)\n")
    (tmp_path / "top.md").write_text("## Not a title\n# Real title\nbody [one](Sub%20Dir/Note%20One.md) [gone](nowhere.md)\n[[Nope]]\n")
    c = import_markdown(tmp_path)
    assert c.ids() == ["top", "sub-dir/note-one"]
    assert c.get("sub-dir/note-one").title == "Note One"  # file stem when there is no '# ' heading
    assert c.get("top").title == "Real title"
    assert c.children("sub-dir/note-one") == ["top"]
    assert c.children("top") == ["sub-dir/note-one"]
    assert c.unresolved_links == 2


def test_markdown_import_errors(tmp_path):
    with pytest.raises(CorpusError, match="not a folder"):
        import_markdown(tmp_path / "nope")
    with pytest.raises(CorpusError, match=r"corpus .*: has no \.md files"):
        import_markdown(tmp_path)
    (tmp_path / "a b.md").write_text("x")
    (tmp_path / "a-b.md").write_text("y")
    with pytest.raises(CorpusError, match="both map to document id 'a-b'"):
        import_markdown(tmp_path)
    (tmp_path / "a b.md").unlink()
    (tmp_path / "bad.md").write_bytes(b"# t\n\xff\xfe")
    with pytest.raises(CorpusError, match=r"bad\.md: not valid UTF-8"):
        import_markdown(tmp_path)


# ------------------------------------------------------------------ loading


def test_builtin_sample_is_the_examples_file():
    c = load_corpus("builtin:sample")
    assert c.source == "builtin:sample"
    packaged = REPO / "operator" / "searchrun" / "data" / "sample-corpus.json"
    assert packaged.read_bytes() == SAMPLE.read_bytes()
    assert len(c) == len(json.loads(SAMPLE.read_bytes())["documents"])


def test_load_paths_and_uris(tmp_path):
    f = tmp_path / "c.json"
    f.write_bytes(dump({"a": {}, "b": {}}))
    assert len(load_corpus(str(f))) == 2
    assert len(load_corpus(f"file://{f}")) == 2
    assert len(load_corpus("c.json", base_dir=tmp_path)) == 2
    assert len(load_corpus(str(MARKDOWN), "markdown")) == 6
    assert len(load_corpus("markdown", fmt="markdown", base_dir=MARKDOWN.parent)) == 6


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(CorpusError) as ei:
        load_corpus("missing.json", base_dir=tmp_path)
    assert str(tmp_path / "missing.json") in str(ei.value) and "does not exist" in str(ei.value)
    with pytest.raises(CorpusError, match="is a folder; set format: markdown"):
        load_corpus(str(MARKDOWN))
    with pytest.raises(CorpusError, match="is not a folder"):
        load_corpus(str(SAMPLE), "markdown")
    with pytest.raises(CorpusError, match="unknown builtin corpus"):
        load_corpus("builtin:nope")
    with pytest.raises(CorpusError, match="unsupported URI scheme"):
        load_corpus("http://example.com/c.json")
    with pytest.raises(CorpusError, match="unknown format"):
        load_corpus("builtin:sample", "yaml")
    with pytest.raises(CorpusError, match="must be absolute"):
        load_corpus("file://host/c.json")
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"{")
    with pytest.raises(CorpusError, match=rf"corpus {bad}: invalid JSON"):
        load_corpus(str(bad))


def test_s3_goes_through_the_injected_reader():
    calls = []

    def read(uri):
        calls.append(uri)
        return dump({"x": {"title": "from s3"}})

    c = load_corpus("s3://bucket/corpora/c.json", read_uri=read)
    assert calls == ["s3://bucket/corpora/c.json"] and c.get("x").title == "from s3"
    with pytest.raises(CorpusError, match="no artifact store reader"):
        load_corpus("s3://bucket/c.json")
    with pytest.raises(CorpusError, match="cannot be read from s3"):
        load_corpus("s3://bucket/c", "markdown", read_uri=read)

    def boom(uri):
        raise KeyError("NoSuchKey")

    with pytest.raises(CorpusError, match=r"corpus s3://bucket/c.json: cannot read: 'NoSuchKey'"):
        load_corpus("s3://bucket/c.json", read_uri=boom)
    with pytest.raises(CorpusError, match=r"corpus s3://bucket/c.json: has no documents"):
        load_corpus("s3://bucket/c.json", read_uri=lambda u: b'{"documents": {}}')


# ------------------------------------------------------------ sample corpus


def test_sample_corpus_is_real_linked_prose():
    c = load_corpus("builtin:sample")
    assert len(c) >= 45
    topics = Counter(doc.metadata["topic"] for doc in c.documents.values())
    clusters = [t for t, n in topics.items() if n >= 5]
    assert len(clusters) >= 4, topics
    for doc in c.documents.values():
        n = len(doc.content.split())
        assert 80 <= n <= 250, (doc.id, n)
        assert doc.title and doc.type in {"overview", "article", "paper", "tutorial"}
    kinds = {k for doc in c.documents.values() for k in doc.relationships}
    assert {"related", "cites", "part_of", "see_also"} <= kinds
    # cross-cluster links, touching at least four clusters
    cross = [(a, b) for a, b in c.edges() if c.get(a).metadata["topic"] != c.get(b).metadata["topic"]]
    touched = {c.get(x).metadata["topic"] for e in cross for x in e}
    assert len(cross) >= 10 and len(touched & set(clusters)) >= 4
    # a couple of links to missing documents, which are ignored
    assert len(c.missing_links()) >= 2
    assert all(t not in c.children(s) for s, _, t in c.missing_links())
    # at least one cycle longer than two (kubernetes-overview -> operators -> CRDs -> overview)
    assert "kubernetes-operators" in c.children("kubernetes-overview")
    assert "custom-resource-definitions" in c.children("kubernetes-operators")
    assert "kubernetes-overview" in c.children("custom-resource-definitions")


# ---------------------------------------------------------------------- CLI


def test_import_command_markdown_to_file(tmp_path, capsys):
    out = tmp_path / "graph.json"
    assert import_command(str(MARKDOWN), str(out)) == 0
    err = capsys.readouterr().err
    assert "6 documents" in err and "edges" in err and "1 missing links dropped" in err
    assert err.count("\n") == 1
    c = parse_corpus(out.read_bytes(), str(out))
    assert len(c) == 6 and c.children("water") == ["index"]


def test_import_command_json_to_stdout_drops_missing_links(capsys):
    assert import_command(str(SAMPLE), None) == 0
    cap = capsys.readouterr()
    data = json.loads(cap.out)
    sample = load_corpus("builtin:sample")
    assert len(data["documents"]) == len(sample)
    assert "missing links dropped" in cap.err and f"{len(sample.missing_links())} missing" in cap.err
    assert parse_corpus(cap.out.encode(), "stdout").missing_links() == []


def test_import_command_errors(tmp_path, capsys):
    assert import_command(str(tmp_path / "nope"), None) == 1
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"documents": {}}')
    assert import_command(str(bad), None) == 1
    assert "has no documents" in capsys.readouterr().err


def test_corpus_object_basics():
    c = Corpus({}, source="x")
    assert len(c) == 0 and "x" in repr(c)
