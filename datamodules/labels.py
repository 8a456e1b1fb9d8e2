"""Label vocabularies, mapped by name.

Datasets ship integer labels in different orders (MAFW alone has three in circulation), so fer_zoo never trusts an
integer without naming the order it comes from: every integer is turned into a canonical class *name* at the source,
and class indices are assigned from the vocabulary the DataModule uses.
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

# FERV39K: 0-6 in the 4_setups CSVs, class names in this order.
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

VOCABULARIES: dict[str, LabelVocabulary] = {
    v.name: v for v in (DFEW, FERV39K, FACES8, *MAFW_ORDERS.values())
}


def get_vocabulary(name: str) -> LabelVocabulary:
    """Look a vocabulary up by name with an error that lists the known ones."""
    try:
        return VOCABULARIES[name]
    except KeyError:
        raise KeyError(f"unknown label vocabulary {name!r}; known: {sorted(VOCABULARIES)}") from None
