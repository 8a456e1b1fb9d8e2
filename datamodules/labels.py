"""Label vocabularies, mapped by name.

Datasets ship integer labels in different orders (MAFW alone has three in circulation), so fer_zoo never trusts an
integer without naming the order it comes from: every integer is turned into a canonical class *name* at the source
(through the order the user names, :mod:`datamodules.label_orders`), and class indices are assigned from the
vocabulary the DataModule uses.
"""

from __future__ import annotations

from dataclasses import dataclass

# Synonyms seen across datasets and label files, mapped to one canonical lowercase name.
_SYNONYMS = {
    "happy": "happiness",
    "happiness": "happiness",
    "sad": "sadness",
    "sadness": "sadness",
    "angry": "anger",
    "anger": "anger",
    "surprised": "surprise",
    "surprise": "surprise",
    "disgusted": "disgust",
    "disgust": "disgust",
    "fearful": "fear",
    "fear": "fear",
    "neutral": "neutral",
    "contempt": "contempt",
    "anxiety": "anxiety",
    "helplessness": "helplessness",
    "disappointment": "disappointment",
}

#: Every canonical class name fer_zoo knows (a folder named one of these, or a synonym, names a class).
KNOWN_CLASSES = frozenset(_SYNONYMS.values())


def canonical_label(name: str) -> str:
    """Lower-case, strip and map synonyms (``HAPPY`` -> ``happiness``); unknown names pass through lower-cased."""
    key = str(name).strip().lower()
    return _SYNONYMS.get(key, key)


@dataclass(frozen=True)
class LabelVocabulary:
    """An ordered tuple of canonical class names; the position is the class index used in training."""

    name: str
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        canon = tuple(canonical_label(c) for c in self.classes)
        if len(set(canon)) != len(canon):
            raise ValueError(f"vocabulary {self.name!r} has duplicate classes: {self.classes}")
        object.__setattr__(self, "classes", canon)

    def __len__(self) -> int:
        return len(self.classes)

    def index(self, label: str) -> int:
        """Class index of ``label`` (any case or synonym); a clear error for a label outside the vocabulary."""
        canon = canonical_label(label)
        try:
            return self.classes.index(canon)
        except ValueError:
            raise KeyError(
                f"label {label!r} is not in the {self.name!r} vocabulary {list(self.classes)}"
            ) from None

    def from_int(self, value: int, base: int = 1) -> str:
        """Name of the class that integer ``value`` denotes in this order (``base`` 1 for 1-based files)."""
        i = int(value) - base
        if not 0 <= i < len(self.classes):
            raise KeyError(f"integer label {value} is outside {self.name!r} ({base}..{base + len(self.classes) - 1})")
        return self.classes[i]


# DFEW: EmoLabel_DataSplit, labels 1-7 (README of the dataset).
DFEW = LabelVocabulary("dfew", ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"))

# FERV39K: its 7 classes (the official 4_setups files hold names). Integers in rewritten files are read only through
# the order the user names: label_order ferv39k (this order, 0-based) or ferv39k_alpha (datamodules.label_orders).
FERV39K = LabelVocabulary("ferv39k", ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"))

# MAFW, 11 single-label classes. Three integer orders circulate; each is named here so a user picks the one their
# label files use instead of silently inheriting one.
# - "mafw_official": the order of MAFW's README / label files (anger .. disappointment).
# - "mafw_alpha": alphabetical, as produced by sklearn's LabelEncoder in several public codebases.
# - "mafw_dfew_first": the 7 DFEW basic emotions first (DFEW order), then the 4 compound MAFW ones, used by
#   codebases that share one head between DFEW and MAFW.
MAFW_ORDERS: dict[str, LabelVocabulary] = {
    "mafw_official": LabelVocabulary(
        "mafw_official",
        ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise",
         "contempt", "anxiety", "helplessness", "disappointment"),
    ),
    "mafw_alpha": LabelVocabulary(
        "mafw_alpha",
        ("anger", "anxiety", "contempt", "disappointment", "disgust", "fear",
         "happiness", "helplessness", "neutral", "sadness", "surprise"),
    ),
    "mafw_dfew_first": LabelVocabulary(
        "mafw_dfew_first",
        ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear",
         "contempt", "anxiety", "helplessness", "disappointment"),
    ),
}
MAFW = MAFW_ORDERS["mafw_official"]

# Labeled static photos (the bundled sample, faces-static): the 8 FER2013+/AffectNet-style classes.
FACES8 = LabelVocabulary(
    "faces8", ("anger", "contempt", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
)

# Photo sets (datamodules.photo_sets): each file's integer order, named so ids are read through it to class names.
# FER2013 (Kaggle fer2013.csv, column `emotion`): 0..6 = angry, disgust, fear, happy, sad, surprise, neutral.
FER2013 = LabelVocabulary("fer2013", ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"))
# FER+ (microsoft/FERPlus fer2013new.csv): the 8 emotion vote columns in file order (then `unknown`, `NF`).
FERPLUS = LabelVocabulary(
    "ferplus", ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
)
# RAF-DB basic (EmoLabel/list_patition_label.txt): 1..7 = surprise, fear, disgust, happiness, sadness, anger, neutral.
RAFDB = LabelVocabulary("rafdb", ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"))
# AffectNet (Manually_Annotated_file_lists/*.csv, column `expression`): 0..7; 8..10 (none, uncertain, no-face) are
# not emotion classes (datamodules.photo_sets.AffectNetSource leaves those rows out and counts them).
AFFECTNET = LabelVocabulary(
    "affectnet", ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
)

# Aff-Wild2 / ABAW expression files (EXPR_Set): 0..7 = the header Neutral,Anger,Disgust,Fear,Happiness,Sadness,
# Surprise,Other (ABAW 3rd-7th; the 1st-2nd had the first 7), -1 = no label (datamodules.affwild2).
ABAW_EXPR = LabelVocabulary(
    "abaw_expr", ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise", "other")
)

VOCABULARIES: dict[str, LabelVocabulary] = {
    v.name: v for v in (DFEW, FERV39K, FACES8, *MAFW_ORDERS.values(), FER2013, FERPLUS, RAFDB, AFFECTNET, ABAW_EXPR)
}


def get_vocabulary(name: str) -> LabelVocabulary:
    """Look a vocabulary up by name with an error that lists the known ones."""
    try:
        return VOCABULARIES[name]
    except KeyError:
        raise KeyError(f"unknown label vocabulary {name!r}; known: {sorted(VOCABULARIES)}") from None


# --------------------------------------------------------------------------------- inferred vocabularies: spellings


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions each cost 1) between two strings."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _spelling_key(name: str) -> str:
    """A label with case, spacing, ``_``/``-`` and known synonyms folded away (``"Very_Happy "`` -> ``veryhappy``)."""
    folded = "".join(ch for ch in str(name).lower() if ch.isalnum())
    return _SYNONYMS.get(folded, folded)


def _near(a: str, b: str) -> bool:
    """Keys one typo apart: edit distance <= 1, or <= 2 when both have 6 or more characters."""
    limit = 2 if min(len(a), len(b)) >= 6 else 1
    return abs(len(a) - len(b)) <= limit and edit_distance(a, b) <= limit


def near_duplicate_labels(counts: dict[str, int]) -> list[dict[str, int]]:
    """Groups of label spellings that look like one class written several ways, each ``{spelling: count}``.

    ``counts`` maps each raw label cell (as written in the file) to how many clips carry it. Two spellings are
    grouped when they differ only in case, spacing, ``_``/``-``, by a known synonym (``happy``/``happiness``, see
    ``_SYNONYMS``), or by an edit distance of 1 (2 for names of 6+ characters: ``hapiness``/``happiness``).
    Grouping is transitive. Only groups of two or more spellings are returned, in the order of ``counts`` (a file's
    order when counted from it), largest count first within a group.
    """
    spellings = list(counts)
    keys = {s: _spelling_key(s) for s in spellings}
    parent = {s: s for s in spellings}

    def find(s: str) -> str:
        while parent[s] != s:
            s = parent[s]
        return s

    for i, a in enumerate(spellings):
        for b in spellings[i + 1:]:
            if keys[a] == keys[b] or _near(keys[a], keys[b]):
                parent[find(b)] = find(a)
    groups: dict[str, list[str]] = {}
    for s in spellings:
        groups.setdefault(find(s), []).append(s)
    return [{s: counts[s] for s in sorted(g, key=lambda s: -counts[s])}
            for g in groups.values() if len(g) > 1]


class LabelSpellingError(ValueError):
    """Labels of an inferred vocabulary that look like one class spelt several ways (the run stops)."""


def check_inferred_labels(counts: dict[str, int], where: str) -> None:
    """Stop when an inferred vocabulary would split one class over near-duplicate spellings.

    ``counts``: raw label spelling -> number of clips; ``where``: the file the labels come from (named in the error).
    Raises :class:`LabelSpellingError` listing every group with its spellings and counts, and the two ways out:
    fix the spellings in the file, or name the classes (``vocabulary: [happiness, sadness, ...]``), which maps case
    and known synonyms and refuses any other spelling with its file and line.
    """
    groups = near_duplicate_labels(counts)
    if not groups:
        return
    found = "; ".join(", ".join(f"{s!r} x{n}" for s, n in g.items()) for g in groups)
    grouped = {s for g in groups for s in g}
    # the suggestion: every ungrouped class, and the most frequent spelling of each group
    classes = sorted({canonical_label(s) for s in counts if s not in grouped}
                     | {canonical_label(next(iter(g))) for g in groups})
    raise LabelSpellingError(
        f"{where}: labels that look like one class spelt several ways: {found}. The classes are inferred from the "
        "labels (no vocabulary named), so fer_zoo will not guess which spellings are one class. Fix the spellings in "
        f"{where}, or name the classes, e.g. vocabulary: [{', '.join(classes)}] (then case and known synonyms such "
        "as happy/happiness map to one class, and any other spelling is an error naming its line)."
    )
