"""Why a sequence scores high, and how it differs from normal: sparse throughout.

Three answers per sequence, none of which densifies a feature matrix:

- **Contributions** (:func:`contributions`): each feature's share of the model's value, adding
  up exactly to it. ``template_rates`` (the default): each template new to the service adds
  ``1 / sqrt(lam)`` and the most shifted template its standardized rise, plus the base
  (:meth:`~lo2_dagster.lib.detector.TemplateRateDetector.contributions`).
  ``rare_tokens``: the rarity of each token present (the score is their sum).
  ``logistic_regression``: coefficient x transformed count, plus the intercept (the decision
  function, i.e. the log-odds of the score). Tree models (decision tree, random forest,
  gradient boosting, isolation forest): path attribution (Saabas), the documented
  permutation-free alternative to SHAP's TreeExplainer: walking a row's path in each tree, the
  change of the node value at each split goes to the split's feature, so the contributions plus
  the root value add up to the tree's output; averaged (forest) or summed (boosting) over
  trees. For the isolation forest the node value is the expected isolation depth, so the
  contributions explain the mean depth (the score is ``2 ** (-depth / c)``); they are negated,
  so that a positive contribution means "isolated early, more anomalous".
- **Rare templates** (:func:`rare_templates`): the Drain templates of the sequence that at most
  :data:`RARE_SHARE` of the same service's normal training sequences contain, or none, with an
  example line.
- **Nearest normal** (:func:`nearest_normal`): the ``correct`` training sequence of the same
  service with the most similar Drain-template counts (cosine, sparse product), and the
  template counts that differ most.

Features come from normalized messages (ids, UUIDs, numbers masked) and Drain templates, so
thread names and correlation ids never become reasons. The
:class:`~lo2_dagster.lib.reference.Reference` that rare templates, nearest normals and drift
compare with is fitted with the model on its training runs and stored in the model bundle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import sparse
from sklearn.ensemble import (
    GradientBoostingClassifier,
    IsolationForest,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import normalize
from sklearn.tree import DecisionTreeClassifier

from lo2_dagster.lib.detector import TemplateRateDetector
from lo2_dagster.lib.model import ModelBundle
from lo2_dagster.lib.reference import IDENTITY, TEMPLATES, Reference
from lo2_dagster.lib.registry import RareTokenDetector, model_kind
from lo2_dagster.lib.vectorize import OOV, token_counts

#: A template in at most this share of the normal training sequences is "rare".
RARE_SHARE = 0.05
#: Features, rare templates and template differences listed per sequence.
TOP = 5
#: An example line is cut to this many characters.
EXAMPLE_CHARS = 300


# --------------------------------------------------------------------------- contributions


@dataclass(frozen=True)
class Contributions:
    """Per row and feature, the feature's share of ``value``; ``base + row sum = value``."""

    values: sparse.csr_matrix
    base: np.ndarray
    #: What the contributions add up to (per model kind).
    value: str


def contributions(estimator: object, matrix: sparse.spmatrix) -> Contributions:
    """Exact additive contributions of each feature to each row's model value (see the module
    docstring for what that value is per model)."""
    x = sparse.csr_matrix(matrix, dtype=np.float64)
    rows = x.shape[0]
    if isinstance(estimator, TemplateRateDetector):
        values, base = estimator.contributions(x)
        return Contributions(values, base, "score (new templates and the largest rate shift, "
                                           "in units of the service's normal variation)")
    if isinstance(estimator, RareTokenDetector):
        tokens = x[:, : estimator.token_columns]
        known, unseen = estimator._weights()
        values = tokens.sign().multiply(known) + tokens.multiply(unseen)
        values = sparse.hstack([values, sparse.csr_matrix((rows, x.shape[1] - tokens.shape[1]))])
        return Contributions(sparse.csr_matrix(values), np.zeros(rows), "score")
    model = estimator
    if isinstance(estimator, Pipeline):
        x = sparse.csr_matrix(estimator[:-1].transform(x), dtype=np.float64)
        model = estimator[-1]
    if isinstance(model, LogisticRegression):
        return Contributions(sparse.csr_matrix(x.multiply(model.coef_[0])),
                             np.full(rows, float(model.intercept_[0])),
                             "decision function (log-odds of the score)")
    if isinstance(model, DecisionTreeClassifier | RandomForestClassifier):
        trees = [model] if isinstance(model, DecisionTreeClassifier) else model.estimators_
        total, base = _sum_trees(x, [(t, _probability(t), 0.0, None) for t in trees])
        return Contributions(total / len(trees), np.full(rows, base / len(trees)),
                             "score (probability of anomalous)")
    if isinstance(model, GradientBoostingClassifier):
        rate = model.learning_rate
        trees = [(t, _subtree_means(t, t.tree_.value[:, 0, 0] * rate), 0.0, None)
                 for t in model.estimators_[:, 0]]
        total, base = _sum_trees(x, trees)
        # The initial raw prediction (the class prior's log-odds): what the decision function
        # has beyond the trees, read through public API only.
        init = (float(model.decision_function(x[:1])[0])
                - rate * sum(float(t.predict(x[:1])[0]) for t in model.estimators_[:, 0])
                if rows else 0.0)
        return Contributions(total, np.full(rows, base + init),
                             "decision function (log-odds of the score)")
    if isinstance(model, IsolationForest):
        trees = [(t, _expected_depth(t), 1.0, f)
                 for t, f in zip(model.estimators_, model.estimators_features_, strict=True)]
        total, base = _sum_trees(x, trees)
        n = len(trees)
        return Contributions(-total / n, np.full(rows, -base / n),
                             "minus the mean isolation depth (score = 2 ** (value / c))")
    raise TypeError(f"no contributions for {type(model).__name__}")


def model_value(estimator: object, matrix: sparse.spmatrix) -> np.ndarray:
    """The value :func:`contributions` decomposes, from the estimator's own API."""
    model = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    if isinstance(model, RareTokenDetector | TemplateRateDetector):
        return estimator.score_samples(matrix)
    if isinstance(model, LogisticRegression | GradientBoostingClassifier):
        return estimator.decision_function(matrix)
    if isinstance(model, IsolationForest):
        c = _average_depth(np.array([model.max_samples_]))[0]
        return np.log2(-estimator.score_samples(matrix)) * c
    return estimator.predict_proba(matrix)[:, 1]


def _sum_trees(x: sparse.csr_matrix, trees: list[tuple[object, np.ndarray, float, object]]
               ) -> tuple[sparse.csr_matrix, float]:
    total = sparse.csr_matrix(x.shape)
    base = 0.0
    for tree, values, step, features in trees:
        part = _path_contributions(tree, x if features is None else x[:, features], values,
                                   step, x.shape[1], features)
        total = total + part
        base += float(values[0])
    return sparse.csr_matrix(total), base


def _path_contributions(tree: object, x: sparse.csr_matrix, values: np.ndarray, step: float,
                        width: int, features: np.ndarray | None) -> sparse.csr_matrix:
    """One tree: for each row, ``values[child] + step - values[parent]`` at each split of its
    path, summed per split feature (``step``: what an edge adds, 1 for depth)."""
    t = tree.tree_  # type: ignore[attr-defined]
    paths = tree.decision_path(x).tocsr()  # type: ignore[attr-defined]  # rows x nodes
    parent = np.full(t.node_count, -1)
    internal = np.flatnonzero(t.children_left >= 0)
    parent[t.children_left[internal]] = internal
    parent[t.children_right[internal]] = internal
    rows = np.repeat(np.arange(x.shape[0]), np.diff(paths.indptr))
    nodes = paths.indices
    keep = nodes != 0
    rows, nodes = rows[keep], nodes[keep]
    up = parent[nodes]
    feature = t.feature[up]
    if features is not None:
        feature = np.asarray(features)[feature]
    delta = values[nodes] + step - values[up]
    return sparse.csr_matrix((delta, (rows, feature)), shape=(x.shape[0], width))


def _subtree_means(tree: object, values: np.ndarray, step: float = 0.0) -> np.ndarray:
    """Leaf values kept; each split's value becomes the weighted mean of its children's (plus
    ``step`` per edge), so a split's change of value is what its branch adds. Gradient boosting
    needs it (its leaves hold Newton-step values, its splits the plain mean of the residuals),
    and so does the isolation depth."""
    t = tree.tree_  # type: ignore[attr-defined]
    weight = t.weighted_n_node_samples
    out = values.astype(np.float64).copy()
    left, right = t.children_left, t.children_right
    for node in range(t.node_count - 1, -1, -1):  # children have larger ids than their parent
        if left[node] >= 0:
            a, b = left[node], right[node]
            out[node] = step + (weight[a] * out[a] + weight[b] * out[b]) / (weight[a] + weight[b])
    return out


def _probability(tree: DecisionTreeClassifier) -> np.ndarray:
    """Each node's probability of the anomalous class (``True``), as predict_proba gives it."""
    value = tree.tree_.value[:, 0, :]
    column = list(tree.classes_).index(True) if True in tree.classes_ else 0
    return value[:, column] / value.sum(axis=1)


def _average_depth(samples: np.ndarray) -> np.ndarray:
    """Expected depth of an unsuccessful search in a binary tree of ``samples`` points
    (scikit-learn's ``_average_path_length``)."""
    n = samples.astype(np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _expected_depth(tree: object) -> np.ndarray:
    """Each node's expected remaining isolation depth over the training points through it:
    a leaf's average depth of the points it still holds; a split's, its children's plus the
    edge, weighted by their points."""
    t = tree.tree_  # type: ignore[attr-defined]
    return _subtree_means(tree, _average_depth(t.n_node_samples), step=1.0)


# --------------------------------------------------------------------------- per sequence


def feature_label(name: str, templates: Mapping[str, str]) -> str:
    """A feature name as a user reads it: Drain ids become their template text."""
    bag, _, token = name.partition(":")
    if token == OOV:
        return {"drain": "templates never seen in training",
                "words": "words never seen in training",
                "trigrams": "trigrams never seen in training"}.get(bag, name)
    if bag == "drain":
        text = templates.get(token)
        return f"template {token}: {text}" if text else f"template {token}"
    if bag == "numeric":
        return f"{token} (numeric)"
    if bag in ("service", "events"):
        return name
    return f"{bag[:-1]} '{token}'"


def top_features(contrib: Contributions, names: tuple[str, ...], templates: Mapping[str, str],
                 top: int = TOP) -> list[list[dict[str, object]]]:
    """Per row, the ``top`` features with the largest positive contributions."""
    values = contrib.values.tocsr()
    out = []
    for i in range(values.shape[0]):
        start, end = values.indptr[i], values.indptr[i + 1]
        cols, data = values.indices[start:end], values.data[start:end]
        order = np.lexsort((cols, -data))  # largest first; ties by column (deterministic)
        out.append([{"feature": names[cols[j]], "label": feature_label(names[cols[j]],
                                                                       templates),
                     "contribution": float(data[j])}
                    for j in order[:top] if data[j] > 0])
    return out


def rare_templates(frame: pl.DataFrame, reference: Reference, examples: pl.DataFrame,
                   templates: Mapping[str, str], share: float = RARE_SHARE,
                   top: int = TOP) -> list[list[dict[str, object]]]:
    """Per row of ``frame``, its templates that at most ``share`` of the same service's normal
    training sequences contain (absent ones first, then the rarest), with their count in the
    sequence, that share and an example line (``examples``: seq_id, template, example)."""
    pairs = (token_counts(frame, TEMPLATES)
             .join(frame.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"),
                                "seq_id", "service"), on="row")
             .join(reference.normal_shares(), on=["service", "token"], how="left")
             .with_columns(pl.col("normal_share").fill_null(0.0))
             .filter(pl.col("normal_share") <= share)
             .join(examples.rename({"template": "token"}), on=["seq_id", "token"], how="left")
             .sort(["row", "normal_share", "count", "token"],
                   descending=[False, False, True, False]))
    rows: list[list[dict[str, object]]] = [[] for _ in range(len(frame))]
    for row, token, count, normal_share, example in pairs.select(
            "row", "token", "count", "normal_share", "example").iter_rows():
        if len(rows[row]) < top:
            rows[row].append({"template_id": token, "template": templates.get(token, ""),
                              "count": int(count), "normal_share": float(normal_share),
                              "example": example or ""})
    return rows


@dataclass(frozen=True)
class Nearest:
    """Per row: the nearest normal training sequence (or None) and the cosine similarity."""

    seq_id: list[str | None]
    similarity: list[float | None]
    rows: list[int | None]  # index into reference.normal_meta


def nearest_normal(frame: pl.DataFrame, reference: Reference) -> Nearest:
    """For each row, the normal training sequence of the same service whose template counts
    are most similar (cosine; a sparse product, never a dense feature matrix), other than the
    sequence itself. Ties go to the first in the reference (training-run order). None when no
    normal sequence of the service shares a template with it."""
    if not reference.normal_sequences:  # e.g. a supervised model with no correct training run
        return Nearest([None] * len(frame), [None] * len(frame), [None] * len(frame))
    matrix, norms = reference.template_matrix(frame)
    scaled = sparse.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
                          ) @ matrix
    normals = normalize(reference.normal_counts, norm="l2", copy=True)
    services = reference.normal_meta["service"].to_numpy()
    normal_ids = reference.normal_meta["seq_id"].to_numpy()
    found: list[int | None] = [None] * len(frame)
    similarity: list[float | None] = [None] * len(frame)
    for service in frame["service"].unique().sort().to_list():
        mine = np.flatnonzero(frame["service"].to_numpy() == service)
        theirs = np.flatnonzero(services == service)
        if not len(theirs):
            continue
        sims = (scaled[mine] @ normals[theirs].T).toarray()  # rows x normals, not features
        own = frame["seq_id"].to_numpy()[mine][:, None] == normal_ids[theirs][None, :]
        sims[own] = -1.0
        best = sims.argmax(axis=1)
        for k, (i, j) in enumerate(zip(mine, best, strict=True)):
            if sims[k, j] > 0:  # shares a template (and is not the sequence itself)
                found[i] = int(theirs[j])
                similarity[i] = float(sims[k, j])
    ids = [str(normal_ids[j]) if j is not None else None for j in found]
    return Nearest(ids, similarity, found)


def template_differences(frame: pl.DataFrame, reference: Reference, nearest: Nearest,
                         templates: Mapping[str, str], top: int = TOP
                         ) -> list[list[dict[str, object]]]:
    """Per row, the templates whose counts differ most between the sequence and its nearest
    normal sequence (count, normal count, difference), largest difference first."""
    pairs = token_counts(frame, TEMPLATES)
    by_row: dict[int, dict[str, int]] = {}
    for row, token, count in pairs.iter_rows():
        by_row.setdefault(row, {})[token] = int(count)
    counts = reference.normal_counts.tocsr()
    out = []
    for i, j in enumerate(nearest.rows):
        if j is None:
            out.append([])
            continue
        start, end = counts.indptr[j], counts.indptr[j + 1]
        theirs = {reference.templates[c]: int(v)
                  for c, v in zip(counts.indices[start:end], counts.data[start:end],
                                  strict=True)}
        mine = by_row.get(i, {})
        diffs = sorted(((mine.get(t, 0) - theirs.get(t, 0), t) for t in set(mine) | set(theirs)),
                       key=lambda d: (-abs(d[0]), d[1]))
        out.append([{"template_id": t, "template": templates.get(t, ""),
                     "count": mine.get(t, 0), "normal_count": theirs.get(t, 0),
                     "difference": d} for d, t in diffs[:top] if d != 0])
    return out


def reason(features: list[dict[str, object]], rare: list[dict[str, object]],
           known: frozenset[str] = frozenset()) -> str:
    """One line: the top contribution, naming the template and its example when it is a
    template the service's normal training sequences never (or rarely) show. ``known``: the
    templates with a column of their own (the others are counted in ``drain:<oov>``)."""
    if not features:
        return "no feature pushed the score up"
    top = features[0]
    feature = str(top["feature"])
    if feature.startswith("drain:"):
        token = feature.partition(":")[2]
        unseen = [r for r in rare if r["template_id"] not in known]
        named = [r for r in rare if r["template_id"] == token]
        pick = (unseen or [None])[0] if token == OOV else (named or [None])[0]
        if pick is not None:
            seen = ("never seen in normal training" if not pick["normal_share"] else
                    f"in {float(pick['normal_share']):.0%} of normal training sequences")
            text = pick["example"] or pick["template"] or pick["template_id"]
            return f"template {pick['template_id']} ({seen}, x{pick['count']}): {text}"
        if top["example"]:
            return (f"+{float(top['contribution']):.3g} from template {token}: "
                    f"{top['example']}")
    return f"+{float(top['contribution']):.3g} from {top['label']}"


#: ``lo2/explanations``: one row per predicted-anomalous sequence.
_FEATURE = pl.Struct({"feature": pl.String, "label": pl.String, "contribution": pl.Float64,
                      "example": pl.String})
_RARE = pl.Struct({"template_id": pl.String, "template": pl.String, "count": pl.Int64,
                   "normal_share": pl.Float64, "example": pl.String})
_DIFF = pl.Struct({"template_id": pl.String, "template": pl.String, "count": pl.Int64,
                   "normal_count": pl.Int64, "difference": pl.Int64})
EXPLANATIONS_SCHEMA: dict[str, pl.DataType] = {
    "seq_id": pl.String(), "run": pl.String(), "test_case": pl.String(),
    "service": pl.String(), "score": pl.Float64(), "rank": pl.UInt32(),
    "reason": pl.String(),
    "value": pl.Float64(), "base": pl.Float64(), "value_kind": pl.String(),
    "top_features": pl.List(_FEATURE),
    "rare_templates": pl.List(_RARE),
    "nearest_normal": pl.String(), "nearest_similarity": pl.Float64(),
    "template_differences": pl.List(_DIFF),
}


def sequence_columns(bundle: ModelBundle) -> list[str]:
    """The enhanced-sequence columns :func:`explain` reads: the model's and the templates."""
    columns = list(bundle.columns)
    return columns if TEMPLATES in columns else [*columns, TEMPLATES]


def explain(bundle: ModelBundle, frame: pl.DataFrame, examples: pl.DataFrame,
            templates: Mapping[str, str], top: int = TOP) -> pl.DataFrame:
    """Explanations (:data:`EXPLANATIONS_SCHEMA`) of the sequences in ``frame`` (enhanced
    sequence rows with :func:`sequence_columns`, and ``rank`` if known, else ranked here by
    score), most anomalous first, with ``examples`` (seq_id, template, example line, see
    :func:`example_lines`) and ``templates`` (id -> text)."""
    reference = bundle.reference
    if reference is None:
        raise ValueError("the model bundle has no reference (it predates explanations): "
                         "materialize lo2/anomaly_model again")
    if not len(frame):
        return pl.DataFrame(schema=EXPLANATIONS_SCHEMA)
    matrix = bundle.vectorizer.transform(frame)
    contrib = contributions(bundle.estimator, matrix)
    names = bundle.vectorizer.feature_names
    features = top_features(contrib, names, templates, top)
    lines = {(seq, template): text for seq, template, text in
             examples.select("seq_id", "template", "example").iter_rows()}
    for seq_id, row in zip(frame["seq_id"].to_list(), features, strict=True):
        for feature in row:
            bag, _, token = str(feature["feature"]).partition(":")
            feature["example"] = lines.get((seq_id, token), "") if bag == "drain" else ""
    rare = rare_templates(frame, reference, examples, templates, top=top)
    nearest = nearest_normal(frame, reference)
    diffs = template_differences(frame, reference, nearest, templates, top)
    known = frozenset(t for v in bundle.vectorizer.vocabularies
                      if v.bag == "drain" for t in v.tokens)
    totals = contrib.base + np.asarray(contrib.values.sum(axis=1)).ravel()
    scores = model_kind(bundle.model).scores(bundle.estimator, matrix)
    rank = (frame["rank"] if "rank" in frame.columns else
            pl.Series(scores).rank("ordinal", descending=True))
    return frame.select(IDENTITY).with_columns(
        pl.Series("score", scores, pl.Float64),
        rank.cast(pl.UInt32).alias("rank"),
        pl.Series("reason", [reason(f, r, known) for f, r in zip(features, rare, strict=True)],
                  pl.String),
        pl.Series("value", totals, pl.Float64),
        pl.Series("base", contrib.base, pl.Float64),
        pl.lit(contrib.value).alias("value_kind"),
        pl.Series("top_features", features, pl.List(_FEATURE)),
        pl.Series("rare_templates", rare, pl.List(_RARE)),
        pl.Series("nearest_normal", nearest.seq_id, pl.String),
        pl.Series("nearest_similarity", nearest.similarity, pl.Float64),
        pl.Series("template_differences", diffs, pl.List(_DIFF)),
    ).select([pl.col(c).cast(t) for c, t in EXPLANATIONS_SCHEMA.items()]).sort("rank", "seq_id")


def example_lines(events: pl.LazyFrame, seq_ids: list[str]) -> pl.DataFrame:
    """The first event of each template in each of ``seq_ids`` (seq_id, template, example),
    from enhanced events (``row_id``, ``seq_id``, ``e_event_drain_id``, ``m_message``): its
    first line, and the second too when the first is short (``Exception:`` and the exception
    below it), cut to :data:`EXAMPLE_CHARS`."""
    lines = pl.col("m_message").str.split("\n")
    first = lines.list.first()
    example = (pl.when((first.str.len_chars() < 40) & (lines.list.len() > 1))
               .then(pl.concat_str(first, lines.list.get(1, null_on_oob=True)
                                   .str.strip_chars(), separator=" "))
               .otherwise(first))
    return (events.filter(pl.col("seq_id").is_in(seq_ids))
            .group_by("seq_id", TEMPLATES)
            .agg(pl.col("m_message").sort_by("row_id").first())
            .select("seq_id", pl.col(TEMPLATES).alias("template"),
                    example.str.slice(0, EXAMPLE_CHARS).alias("example"))
            .sort("seq_id", "template")
            .collect(engine="streaming"))


def run_summary(explanations: pl.DataFrame, test_cases: int, threshold: float) -> str:
    """Markdown for people: which test cases look anomalous, in which services, and the top
    reason each (that of its highest-scoring sequence)."""
    if not len(explanations):
        return (f"No sequence scored above the threshold {threshold:.4g}: none of the "
                f"{test_cases} test cases looks anomalous.")
    cases = (explanations.sort(["score", "seq_id"], descending=[True, False])
             .group_by("test_case", maintain_order=True)
             .agg(pl.col("service"), pl.col("score").first(), pl.col("reason").first()))
    lines = [f"**{len(cases)} of {test_cases} test cases look anomalous** "
             f"({len(explanations)} sequences above the threshold {threshold:.4g}):", ""]
    for case, services, score, why in cases.iter_rows():
        lines.append(f"- `{case}` in {', '.join(services)} (score {score:.4g}): "
                     f"{_markdown_safe(why)}")
    return "\n".join(lines)


def _markdown_safe(text: str) -> str:
    """A line of log text inside markdown: in backticks, without the ones it contains."""
    head, sep, tail = text.partition(": ")
    return f"{head}{sep}`{tail.replace('`', chr(39))}`" if sep else text
