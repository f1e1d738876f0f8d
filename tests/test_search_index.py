import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

import kerasmm
from kerasmm import search
from kerasmm.data import BadRecordError, image_header
from kerasmm.search import Index, contact_sheet

N = 12


@pytest.fixture(scope="module")
def model():
    return kerasmm.zoo.get("tiny_dual_encoder")


@pytest.fixture(scope="module")
def images():
    features, _ = kerasmm.data.shapes_arrays(num_examples=N, image_size=32)
    return features["image"]


@pytest.fixture(scope="module")
def paths(images, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gallery")
    written = []
    for i, image in enumerate(images):
        path = str(folder / f"{i:02d}.png")
        Image.fromarray(image).save(path)
        written.append(path)
    return written


@pytest.fixture(scope="module")
def index(model, paths):
    return Index.from_images(model, paths=paths, batch_size=5)


def broken_png(folder, name="broken.png"):
    path = str(folder / name)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10 + b"IEND")
    return path


def test_index_from_files_and_from_array_agree(model, images, paths, index):
    assert len(index) == N and index.keys == paths
    assert index.embeddings.shape == (N, 16) and index.embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(index.embeddings, axis=1), 1.0, atol=1e-5)
    from_array = Index.from_images(model, images=images, batch_size=7)
    assert from_array.keys == list(range(N))
    np.testing.assert_allclose(from_array.embeddings, index.embeddings, atol=1e-5)  # PNG is lossless
    assert index.metadata["embedding_dim"] == 16 and "created" in index.metadata and len(index.skipped) == 0


def test_text_search_is_ranked_by_dot_product(model, index):
    queries = ["a red circle", "a large blue square"]
    results = index.search_text(model, queries, k=5)
    text = model.encode_text(queries)
    assert len(results) == 2
    for query_embedding, matches in zip(text, results):
        assert len(matches) == 5 and len({key for key, _ in matches}) == 5
        scores = [score for _, score in matches]
        assert scores == sorted(scores, reverse=True)
        for key, score in matches:
            assert score == pytest.approx(float(index.embeddings[index.keys.index(key)] @ query_embedding), abs=1e-5)
        best_possible = float(np.max(index.embeddings @ query_embedding))
        assert scores[0] == pytest.approx(best_possible, abs=1e-5)


def test_image_query_finds_itself_first(model, images, index, paths):
    results = index.search_image(model, images[[0, 5, 11]], k=3)
    for i, matches in zip([0, 5, 11], results):
        key, score = matches[0]
        assert key == paths[i] and score == pytest.approx(1.0, abs=1e-4)


def test_top_k_matches_a_full_sort_and_clamps_k():
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(500, 8)).astype("float32")
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    queries = gallery[:3] + 0.1 * rng.normal(size=(3, 8)).astype("float32")
    index = Index(gallery)
    for k in (1, 7, 500, 1000):
        results = index.search(queries, k=k)
        expected = np.argsort(-(queries @ gallery.T), axis=1)[:, : min(k, 500)]
        assert [[key for key, _ in row] for row in results] == expected.tolist()
    assert index.search(queries[0], k=2)[0][0][0] == 0  # a single 1-D query


@pytest.fixture(scope="module")
def random_gallery():
    """3000 random unit vectors of width 32 and 40 queries: no cluster structure, the hard case for codes."""
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(3040, 32)).astype("float32")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors[:3000], vectors[3000:]


needs_faiss = pytest.mark.skipif(not search.approximate_available(), reason="needs faiss: pip install kerasmm[search]")


@needs_faiss
def test_approximate_search_keeps_exact_scores_and_most_matches(random_gallery, tmp_path, monkeypatch):
    gallery, queries = random_gallery
    truth = Index(gallery, method="exact").search(queries, k=10)
    index = Index(gallery, method="approximate", candidates=150)
    assert index.method == "approximate"
    found = index.search(queries, k=10)
    recall = np.mean([len({key for key, _ in a} & {key for key, _ in b}) / 10 for a, b in zip(found, truth)])
    assert recall >= 0.9, recall
    for query, matches in zip(queries, found):
        scores = [score for _, score in matches]
        assert scores == sorted(scores, reverse=True)
        np.testing.assert_allclose(scores, gallery[[key for key, _ in matches]] @ query, atol=1e-5)
    index.candidates = len(gallery)  # every row a candidate: the exact answer
    assert index.search(queries, k=10) == truth
    index.candidates = 150

    path = index.save(tmp_path / "codes.npz")  # the codes travel in the file
    loaded = Index.load(path)
    assert loaded.method == "approximate" and loaded.candidates == 150 and loaded.search(queries, k=10) == found
    assert Index.load(path, method="exact").search(queries, k=10) == truth
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "faiss", None)  # faiss gone: "auto" falls back to exact search
        assert Index.load(path).method == "exact"

    old = tmp_path / "format1.npz"  # a file of kerasmm before approximate search
    metadata = {"format": search.INDEX_FORMAT, "format_version": 1, "key_type": "int", "num_items": len(gallery)}
    np.savez(old, embeddings=gallery, keys=np.arange(len(gallery)).astype(str), metadata=json.dumps(metadata))
    assert Index.load(old).method == "exact" and Index.load(old, method="approximate").method == "approximate"
    monkeypatch.setattr(search, "APPROXIMATE_MIN_ITEMS", 2000)
    assert Index(gallery).method == "approximate" and Index(gallery[:1999]).method == "exact"
    with pytest.raises(ValueError, match="at least 1000 items"):
        Index(gallery[:999], method="approximate")
    with pytest.raises(ValueError, match=r"width 16 .* width 32"):
        index.search(np.ones((1, 16), "float32"))


def test_approximate_search_without_faiss_says_what_to_install(random_gallery, model, images, monkeypatch):
    gallery, queries = random_gallery
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` raises ImportError
    assert not search.approximate_available()
    with pytest.raises(ImportError, match=r"pip install kerasmm\[search\]"):
        Index(gallery, method="approximate")
    with pytest.raises(ImportError, match=r"pip install kerasmm\[search\]"):  # before embedding anything
        Index.from_images(model, images=images, method="approximate")
    monkeypatch.setattr(search, "APPROXIMATE_MIN_ITEMS", 1000)
    index = Index(gallery)  # "auto" without faiss: exact
    assert index.method == "exact" and len(index.search(queries, k=3)[0]) == 3


def test_save_load_round_trip(model, index, images, tmp_path):
    for built, name in ((index, "paths.npz"), (Index.from_images(model, images=images), "rows.idx")):
        path = built.save(tmp_path / name)
        assert path == str(tmp_path / name) and os.path.isfile(path)  # saved at exactly the given name
        loaded = Index.load(path)
        assert loaded.keys == built.keys and type(loaded.keys[0]) is type(built.keys[0])
        np.testing.assert_array_equal(loaded.embeddings, built.embeddings)
        assert loaded.metadata == built.metadata
        assert loaded.search_text(model, ["a circle"], k=3) == built.search_text(model, ["a circle"], k=3)


def test_load_refuses_files_that_are_not_indexes(paths, tmp_path):
    np.save(tmp_path / "array.npy", np.zeros(3))
    np.savez(tmp_path / "other.npz", embeddings=np.zeros((2, 2)))
    for path in (paths[0], tmp_path / "array.npy", tmp_path / "other.npz"):
        with pytest.raises(ValueError, match="not a kerasmm retrieval index"):
            Index.load(path)
    with pytest.raises(FileNotFoundError):
        Index.load(tmp_path / "missing.npz")


def test_user_mistakes_are_clear_errors(model, index):
    with pytest.raises(ValueError, match="empty gallery"):
        Index.from_images(model, images=np.zeros((0, 32, 32, 3), "uint8"))
    with pytest.raises(ValueError, match="empty gallery"):
        Index.from_images(model, paths=[])
    with pytest.raises(ValueError, match="empty gallery"):
        Index(np.zeros((0, 16), "float32"))
    with pytest.raises(ValueError, match="method.*exact"):
        Index(np.eye(3, dtype="float32"), method="fast")
    for queries in ([], [""], ["a circle", "  "]):
        with pytest.raises(ValueError, match="[Nn]o queries|empty"):
            index.search_text(model, queries)
    with pytest.raises(ValueError, match="No query images"):
        index.search_image(model, np.zeros((0, 32, 32, 3), "uint8"))
    for k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be a positive int"):
            index.search_text(model, ["a circle"], k=k)
    narrow = Index(np.eye(8, dtype="float32"))
    with pytest.raises(ValueError, match=r"model embeds into 16 .* index holds 8"):
        narrow.search_text(model, ["a circle"])
    with pytest.raises(ValueError, match=r"width 16 .* width 8"):
        narrow.search(np.ones((1, 16), "float32"))


def test_broken_file_raises_or_is_skipped(model, paths, tmp_path):
    broken = broken_png(tmp_path)
    gallery = paths[:3] + [broken] + paths[3:5]
    with pytest.raises(BadRecordError, match="broken.png"):
        Index.from_images(model, paths=gallery)
    index = Index.from_images(model, paths=gallery, on_error="skip")
    assert index.keys == paths[:5] and [source for source, _ in index.skipped] == [broken]
    with pytest.raises(ValueError, match="empty gallery"):
        Index.from_images(model, paths=[broken, str(tmp_path / "missing.jpg")], on_error="skip")


def test_files_the_decoder_refuses_after_the_pre_check_leave_the_stream_with_their_names(model, paths, tmp_path,
                                                                                        monkeypatch):
    first, last = broken_png(tmp_path), broken_png(tmp_path, "last.png")
    monkeypatch.setattr(image_header, "check_image", lambda path, max_pixels=None: None)  # only the decoder can tell
    gallery = paths[:2] + [first] + paths[2:4] + [last]
    with pytest.raises(BadRecordError, match="broken.png: cannot decode image"):
        Index.from_images(model, paths=gallery, batch_size=2)
    index = Index.from_images(model, paths=gallery, batch_size=2, on_error="skip")
    assert index.keys == paths[:4] and [source for source, _ in index.skipped] == [first, last]
    assert all(reason.startswith("cannot decode image") for _, reason in index.skipped)


def test_contact_sheet_writes_a_png(paths, images, tmp_path):
    out = contact_sheet(paths[:7], [f"{0.9 - i / 10:.3f} {i}" for i in range(7)], tmp_path / "sheet.png", columns=3)
    with Image.open(out) as sheet:
        assert sheet.format == "PNG" and sheet.size == (600, 750)  # 3 columns x 3 rows of 200 x 250 px
    out = contact_sheet(list(images[:2]), ["a", "b\nsecond line"], str(tmp_path / "arrays.png"))
    with Image.open(out) as sheet:
        assert sheet.size == (400, 250)  # columns cut to the number of images
    with pytest.raises(ValueError, match="one caption per image"):
        contact_sheet(paths[:2], ["only one"], tmp_path / "x.png")


def test_rerank_reorders_the_top_candidates_by_the_matching_head(model, images, paths, index):
    matcher = kerasmm.zoo.get("tiny_dual_encoder", matching_layers=1)
    by_path = Index.from_images(matcher, paths=paths)
    query = ["a small red circle"]
    candidates = [key for key, _ in by_path.search_text(matcher, query, k=4)[0]]
    reranked = by_path.search_text(matcher, query, k=2, rerank=4)[0]
    rows = [paths.index(key) for key in candidates]
    logits = matcher.match(query * 4, images[rows])
    best = np.argsort(-logits, kind="stable")[:2]
    assert [key for key, _ in reranked] == [candidates[i] for i in best]
    np.testing.assert_allclose([p for _, p in reranked], 1 / (1 + np.exp(-logits[best])), rtol=1e-5)
    # An index of an in-memory array re-ranks with the array passed back; its keys are row numbers.
    by_row = Index(by_path.embeddings)  # as Index.from_images(matcher, images=images) builds it
    assert [key for key, _ in by_row.search_text(matcher, query, k=2, rerank=4, images=images)[0]] == \
        [rows[i] for i in best]

    with pytest.raises(ValueError, match="keys are not file paths .* pass images="):
        by_row.search_text(matcher, query, k=2, rerank=4)
    with pytest.raises(ValueError, match="images= holds 3 images but the index 12 rows"):
        by_row.search_text(matcher, query, k=2, rerank=4, images=images[:3])
    with pytest.raises(ValueError, match="rerank=1 must be at least k=2"):
        by_path.search_text(matcher, query, k=2, rerank=1)
    with pytest.raises(ValueError, match="images= is only used to re-rank"):
        by_row.search_text(matcher, query, k=2, images=images)
    with pytest.raises(ValueError, match="rerank needs a dual encoder with an image–text matching head"):
        index.search_text(model, query, k=2, rerank=3)
