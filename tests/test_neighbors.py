"""Nearest-neighbour evidence: leave-one-out votes by hand, graphs given by the user, the knn audits and reasons."""

import json

import numpy as np
import pytest

from noisyfit.detect.crossfit import cross_fit
from noisyfit.detect.multilabel_crossfit import cross_fit_multilabel
from noisyfit.detect.neighbors import as_knn_graph, explain_votes, knn_graph, neighbor_class_shares, neighbor_votes
from noisyfit.detect.validation import DetectInputError

# five points on a line, no distance tied: 0, 1, 3 | 10, 12
LINE = np.array([[0.0], [1.0], [3.0], [10.0], [12.0]])


def test_votes_by_hand_never_count_the_example_itself():
    g = knn_graph(LINE, 2, metric="euclidean")
    assert g.indices.tolist() == [[1, 2], [0, 2], [1, 0], [4, 2], [3, 2]]
    labels = np.array([0, 0, 1, 1, 1])
    votes = neighbor_votes(g, labels, 2)
    # point 0: neighbours 1 (class 0) and 2 (class 1); point 2: neighbours 1 and 0, both class 0
    assert votes.tolist() == [[0.5, 0.5], [0.5, 0.5], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
    # a duplicate of a point is a neighbour at distance 0, the point itself is not
    dup = knn_graph(np.array([[0.0], [0.0], [5.0]]), 1, metric="euclidean")
    assert dup.indices[:2, 0].tolist() == [1, 0] and dup.indices[2, 0] in (0, 1)  # 0 and 1 tie for the third
    assert explain_votes(g, labels, [2], ["cat", "dog"]) == {
        2: "2 of its 2 nearest neighbours are labelled 'cat', none 'dog' (the given label)"}
    assert explain_votes(g, labels, [4], ["cat", "dog"]) == {
        4: "2 of its 2 nearest neighbours are labelled 'dog' (the given label)"}
    with pytest.raises(DetectInputError, match="k must be between 1 and"):
        knn_graph(LINE, 5)
    with pytest.raises(DetectInputError, match="all zeros"):
        knn_graph(np.zeros((3, 2)), 1)


def test_a_graph_the_user_brings():
    from scipy.sparse import csr_matrix

    g = knn_graph(LINE, 2, metric="euclidean")
    # cleanlab's form: a sparse distance matrix, one row per example, entries in any order
    rows = np.repeat(np.arange(5), 2)
    sparse = csr_matrix((g.distances[:, ::-1].ravel() + 0.0, (rows, g.indices[:, ::-1].ravel())), shape=(5, 5))
    assert as_knn_graph(sparse).indices.tolist() == g.indices.tolist()
    assert as_knn_graph((g.indices, g.distances)).indices.tolist() == g.indices.tolist()
    with pytest.raises(DetectInputError, match="its own neighbour"):
        as_knn_graph((np.array([[0], [0]]), np.zeros((2, 1))))
    # the knn classifier takes it instead of features
    labels = np.array([0, 0, 1, 1, 1])
    cf = cross_fit(np.zeros((5, 1)), labels, classifier="knn", graph=sparse)
    assert cf.pred_probs.tolist() == neighbor_votes(g, labels, 2).tolist() and (cf.fold == -1).all()
    assert cf.info["folds"] == "leave-one-out" and cf.info["params"]["k"] == 2


def test_label_set_shares_by_hand():
    g = knn_graph(LINE, 2, metric="euclidean")
    sets = np.array([[1, 0], [1, 1], [0, 1], [0, 1], [0, 0]], dtype=bool)
    # point 0: neighbours 1 ({a, b}) and 2 ({b}); point 3: neighbours 4 ({}) and 2 ({b})
    shares = neighbor_class_shares(g, sets)
    assert shares.tolist() == [[0.5, 1.0], [0.5, 0.5], [1.0, 0.5], [0.0, 0.5], [0.0, 1.0]]
    # the knn classifier for label sets: cosine neighbours of the centred features (one common scale)
    from noisyfit.detect.crossfit import scale_features

    rng = np.random.default_rng(0)
    x = rng.normal(size=(14, 3)) + 4.0
    many = rng.random((14, 3)) < 0.5
    many[:5, 0], many[5:10, 0] = True, False  # at least 5 with and without each audited class
    many[:, 2] = False
    many[:3, 2] = True  # class 2: 3 examples, too few for a vote
    centred = x - x.mean(axis=0)
    cos = centred @ centred.T / np.outer(np.linalg.norm(centred, axis=1), np.linalg.norm(centred, axis=1))
    np.fill_diagonal(cos, -np.inf)
    nearest = np.argsort(-cos, axis=1)[:, :4]
    cf = cross_fit_multilabel(x, many, classifier="knn", k=4)
    assert knn_graph(scale_features(x), 4).indices.tolist() == nearest.tolist()
    assert np.allclose(cf.pred_probs[:, :2], many[nearest][:, :, :2].mean(axis=1)) and cf.info["params"]["k"] == 4
    assert list(cf.info["skipped"]) == [2] and np.isnan(cf.pred_probs[:, 2]).all()


def test_the_sentence_marks_the_given_label_among_the_minority_and_a_few_rows_need_no_whole_graph():
    from noisyfit.detect.neighbors import neighbours_of

    # example 0 (given 'cat') has neighbours 1..10: eight dogs and two cats
    x = np.concatenate([[[0.0]], np.arange(1, 11)[:, None] * 0.1, [[50.0], [60.0]]])
    labels = np.array([0] + [1] * 8 + [0] * 2 + [1, 1])
    g = knn_graph(x, 10, metric="euclidean")
    assert explain_votes(g, labels, [0], ["cat", "dog"]) == {
        0: "8 of its 10 nearest neighbours are labelled 'dog', 2 'cat' (the given label)"}
    part = neighbours_of(x, [0, 11], 10, metric="euclidean")
    assert part.indices.tolist() == g.indices[[0, 11]].tolist()
    assert explain_votes(part, labels, [0, 11], ["cat", "dog"], graph_rows=True) == explain_votes(g, labels, [0, 11],
                                                                                                   ["cat", "dog"])
    # duplicates of a row fill its neighbours; the row itself never does
    dup = neighbours_of(np.zeros((4, 1)) + [[1.0]], [2], 3, metric="euclidean")
    assert sorted(dup.indices[0].tolist()) == [0, 1, 3]


def _embeddings_file(path, seed=0):
    from sklearn.datasets import load_digits

    d = load_digits()
    y = d.target.copy()
    rng = np.random.default_rng(seed)
    wrong = rng.random(len(y)) < 0.15
    y[wrong] = (y[wrong] + rng.integers(1, 10, wrong.sum())) % 10
    np.savez(path, x=d.data.astype(np.float32), y=y, true_labels=d.target,
             class_names=np.array([f"d{k}" for k in range(10)]), ids=np.array([f"r{i}" for i in range(len(y))]))


def test_the_embedding_audit_with_knn_votes_and_neighbours_in_every_reason(tmp_path, capsys):
    from noisyfit.cli import main

    _embeddings_file(tmp_path / "e.npz")
    args = ["audit", "--embedder", str(tmp_path / "e.npz"), "--no-progress"]
    assert main([*args, "--classifier", "knn", "--knn-k", "7", "--out", str(tmp_path / "k")]) == 0
    summary = json.loads((tmp_path / "k" / "summary.json").read_text())
    assert summary["cross_fit"]["classifier"] == "knn" and summary["neighbours"]["k"] == 7
    assert summary["detection"]["precision"] > 0.9 and summary["detection"]["recall"] > 0.9  # digits pixels: easy
    rows = (tmp_path / "k" / "issues.csv").read_text().splitlines()[1:]
    assert rows and all("of its 7 nearest neighbours are labelled" in r for r in rows)
    # the report shows the first six neighbours under each of the 24 suspects of its gallery (8x8 feature images)
    page = (tmp_path / "k" / "report.html").read_text()
    assert page.count("class='nbthumb'") == 6 * min(24, len(rows))
    # the cross-fitted classifiers' flags say it too (the graph is the explanation, whoever flagged)
    assert main([*args, "--logreg-c", "0.1", "--folds", "3", "--out", str(tmp_path / "l")]) == 0
    assert "of its 10 nearest neighbours are labelled" in (tmp_path / "l" / "issues.csv").read_text()
    capsys.readouterr()
    # options that would be ignored
    assert main([*args, "--classifier", "knn", "--folds", "3", "--out", str(tmp_path / "x")]) == 2
    assert "knn does not use --folds (no fitting, no folds" in capsys.readouterr().err
    assert main(["audit", "digits", "--knn-k", "5", "--out", str(tmp_path / "y")]) == 2
    assert "set the classifier of an embedding audit: add --embedder" in capsys.readouterr().err
    np.save(tmp_path / "p.npy", np.full((1347, 10), 0.1))
    assert main(["audit", "digits", "--pred-probs", str(tmp_path / "p.npy"), "--classifier", "knn",
                 "--out", str(tmp_path / "z")]) == 2
    assert "set the classifier of an embedding audit" in capsys.readouterr().err
    for extra, said in ((["--classifier", "knn", "--logreg-c", "0.1"], "knn does not use --logreg-c"),
                        (["--classifier", "knn", "--seed", "4"], "knn does not use --seed"),
                        (["--classifier", "mlp", "--logreg-c", "0.1"], "mlp does not use --logreg-c"),
                        (["--classifier", "knn", "--knn-k", "1797"], "--knn-k 1797: at least 1 and at most 1796")):
        assert main([*args, *extra, "--out", str(tmp_path / "w")]) == 2, extra
        assert said in capsys.readouterr().err


def test_knn_votes_are_taken_on_the_centred_embeddings(tmp_path):
    from noisyfit.cli import main

    # all-positive features with a large shared mean (as a ReLU network's): uncentred cosine would see every row
    # as nearly the same direction; the audit centres first
    rng = np.random.default_rng(4)
    x = (rng.random((60, 5)) + 10.0).astype(np.float32)
    y = rng.integers(0, 3, 60)
    np.savez(tmp_path / "e.npz", x=x, y=y, class_names=np.array(["a", "b", "c"]))
    assert main(["audit", "--embedder", str(tmp_path / "e.npz"), "--classifier", "knn", "--knn-k", "3",
                 "--no-progress", "--out", str(tmp_path / "k")]) == 0
    c = x - x.mean(axis=0)
    cos = c @ c.T / np.outer(np.linalg.norm(c, axis=1), np.linalg.norm(c, axis=1))
    np.fill_diagonal(cos, -np.inf)
    nearest = np.argsort(-cos, axis=1)[:, :3]
    expected = np.stack([np.bincount(y[r], minlength=3) / 3 for r in nearest])
    np.testing.assert_allclose(np.load(tmp_path / "k" / "pred_probs.npz")["pred_probs"], expected, atol=1e-6)


def test_audit_embeddings_passes_k_to_the_vote():
    from noisyfit.detect.crossfit import audit_embeddings

    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(3), 20)
    x = np.eye(3)[y] + rng.normal(0, 0.2, (60, 3))
    found = audit_embeddings(x, y, classifier="knn", k=3)
    assert found.info["cross_fit"]["params"]["k"] == 3 and found.info["model_quality"]["what"] == "the votes of 3 nearest neighbours on 3-d embeddings"
