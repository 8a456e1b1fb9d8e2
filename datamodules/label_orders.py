"""Integer labels: read only through an order the user names, and checked against class names in the clip paths.

An integer label means nothing without the order it counts in, and the orders in circulation differ: FERV39K split
files rewritten by public loaders hold 0-6 in alphabetical order (Angry, Disgust, Fear, Happy, Neutral, Sad,
Surprise), others 0-6 in DFEW's order, MAFW has three orders (see :mod:`datamodules.labels`). Read through the wrong
order, every Angry clip trains as happiness and nothing else shows it (issue 28, item 8). So:

- an integer is mapped only through a :class:`LabelOrder` the user names (``label_order`` in a source's settings:
  a name from :data:`KNOWN_ORDERS`, or the class names listed in integer order, 0-based);
- where a clip's path names its class (FERV39K ``Action/Angry/0001``, your own ``clips/Angry/a.mp4``), every
  integer's class is compared with it, and a disagreement stops the run naming the known order that fits the paths;
- with no order named, integers stop the run with the same search, so the error says which order to name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from datamodules.labels import (
    AFFECTNET,
    DFEW,
    FACES8,
    FER2013,
    FERPLUS,
    FERV39K,
    KNOWN_CLASSES,
    MAFW_ORDERS,
    RAFDB,
    LabelVocabulary,
    canonical_label,
)


class LabelOrderError(ValueError):
    """Integer labels that cannot be read: no order named, a value outside it, or paths naming other classes."""


@dataclass(frozen=True)
class LabelOrder:
    """The class names of integer labels: integer ``base + i`` denotes ``classes[i]`` (canonical names).

    ``name``: how a config names it (``label_order: ferv39k_alpha``); ``base``: 0 or 1; ``origin``: who writes
    files in this order (shown in errors).
    """

    name: str
    classes: tuple[str, ...]
    base: int = 0
    origin: str = ""

    def __post_init__(self) -> None:
        canon = tuple(canonical_label(c) for c in self.classes)
        if len(set(canon)) != len(canon) or not canon:
            raise LabelOrderError(f"label_order {self.name!r}: the class names must be distinct and at least one, "
                                  f"got {list(self.classes)}")
        if self.base not in (0, 1):
            raise LabelOrderError(f"label_order {self.name!r}: base must be 0 or 1, got {self.base}")
        object.__setattr__(self, "classes", canon)

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def span(self) -> str:
        """The integers it reads, e.g. ``0..6``."""
        return f"{self.base}..{self.base + len(self.classes) - 1}"

    def class_of(self, value: int) -> str | None:
        """Class name of integer ``value``; ``None`` outside :attr:`span`."""
        i = int(value) - self.base
        return self.classes[i] if 0 <= i < len(self.classes) else None

    def describe(self) -> str:
        """``label_order: ferv39k_alpha (0=anger, 1=disgust, ...)``, as a user would write it."""
        pairs = ", ".join(f"{self.base + i}={c}" for i, c in enumerate(self.classes))
        return f"label_order: {self.name} ({pairs})"


def _order(vocab: LabelVocabulary, base: int, origin: str, name: str | None = None) -> LabelOrder:
    return LabelOrder(name or vocab.name, vocab.classes, base, origin)


#: Every order fer_zoo can name. Bases as the files that use them are written.
KNOWN_ORDERS: dict[str, LabelOrder] = {o.name: o for o in (
    _order(DFEW, 1, "the DFEW release (EmoLabel_DataSplit, 1-7)"),
    _order(FERV39K, 0, "DFEW's order, 0-based, as some FERV39K loaders write it"),
    LabelOrder("ferv39k_alpha", tuple(sorted(FERV39K.classes)), 0,
               "alphabetical, 0-based (sklearn LabelEncoder or torchvision ImageFolder over Angry..Surprise)"),
    _order(MAFW_ORDERS["mafw_official"], 0, "MAFW's README order, 0-based (MAE-DFER's preprocessing)"),
    _order(MAFW_ORDERS["mafw_alpha"], 0, "alphabetical, 0-based (sklearn LabelEncoder)"),
    _order(MAFW_ORDERS["mafw_dfew_first"], 0, "DFEW's 7 first, 0-based (DFER-CLIP's annotation files)"),
    _order(FER2013, 0, "Kaggle fer2013.csv"),
    _order(FERPLUS, 0, "FER+ vote columns"),
    _order(RAFDB, 1, "RAF-DB list_patition_label.txt"),
    _order(AFFECTNET, 0, "AffectNet expression column"),
    _order(FACES8, 0, "alphabetical over 8 classes, 0-based"),
)}

#: What a list in ``label_order`` is called in messages.
LISTED = "your list"


def resolve_order(value: str | Sequence[str] | LabelOrder | None, dataset: str) -> LabelOrder | None:
    """The order a config names: a key of :data:`KNOWN_ORDERS`, or class names in integer order (read 0-based).

    ``dataset`` names the source in the error for an unknown name (``LabelOrderError`` listing the known ones).
    """
    if value is None or isinstance(value, LabelOrder):
        return value
    if isinstance(value, str):
        try:
            return KNOWN_ORDERS[value]
        except KeyError:
            raise LabelOrderError(f"unknown {dataset} label_order {value!r}; known: {sorted(KNOWN_ORDERS)}, or list "
                                  "the class names in the order of your integers (0-based)") from None
    return LabelOrder(LISTED, tuple(str(c) for c in value), 0, "the class names you listed")


def orders_over(classes: Iterable[str], exact: bool = True) -> list[LabelOrder]:
    """Known orders over exactly these classes (``exact``), or over classes that are all among them."""
    want = {canonical_label(c) for c in classes}
    return [o for o in KNOWN_ORDERS.values() if (set(o.classes) == want if exact else set(o.classes) <= want)]


def path_class(path: str, classes: Iterable[str] = KNOWN_CLASSES) -> str | None:
    """The class a clip's path names in its folders (``Action/Angry/0001`` -> ``anger``), or ``None``.

    Only the folders count (not the file or clip name itself), any case or known synonym; a path whose folders name
    no class, or two different ones, names none.
    """
    known = set(classes)
    named = {c for part in PurePosixPath(str(path)).parts[:-1] if (c := canonical_label(part)) in known}
    return next(iter(named)) if len(named) == 1 else None


@dataclass(frozen=True)
class IntegerLabel:
    """One integer label cell: its ``value``, ``where`` it is written (``file:line``) and the clip's ``path``
    (relative to the data root, as its clip id)."""

    value: int
    where: str
    path: str


def fitting_orders(labels: Sequence[IntegerLabel], candidates: Sequence[LabelOrder],
                   path_classes: Iterable[str] = KNOWN_CLASSES) -> list[LabelOrder]:
    """Those ``candidates`` that read every label in range and give every clip whose path names a class that class.

    Empty when no label's path names a class (nothing to tell orders apart by).
    """
    known = set(path_classes)
    named = [(lab.value, c) for lab in labels if (c := path_class(lab.path, known)) is not None]
    if not named:
        return []
    values = {lab.value for lab in labels}
    return [o for o in candidates if all(o.class_of(v) is not None for v in values)
            and all(o.class_of(v) == c for v, c in named)]


def _advice(labels: Sequence[IntegerLabel], candidates: Sequence[LabelOrder], path_classes: set[str]) -> str:
    """What to name: the known orders that fit the class names in the paths, or why none can be told."""
    fits = fitting_orders(labels, candidates, path_classes)
    if fits:
        return "the class names in the clip paths fit " + " or ".join(o.describe() for o in fits[:3])
    if any(path_class(lab.path, path_classes) is not None for lab in labels):
        return ("no known order fits the class names in the clip paths; list your classes in the order of your "
                "integers (0-based): label_order: [name0, name1, ...]")
    values = {lab.value for lab in labels}
    usable = [o.name for o in candidates if all(o.class_of(v) is not None for v in values)]
    return ("the clip paths name no classes to check an order against; known orders that read these integers: "
            f"{usable or 'none'}, or list your classes in the order of your integers (0-based): "
            "label_order: [name0, name1, ...]")


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def read_integer_labels(labels: Sequence[IntegerLabel], order: LabelOrder | None, candidates: Sequence[LabelOrder],
                        hint: str = "", path_classes: Iterable[str] = KNOWN_CLASSES) -> list[str]:
    """Class names of integer ``labels`` read through ``order``, cross-checked against their paths.

    ``candidates``: the known orders to search when naming the order that fits; ``hint``: a sentence about the data
    set's own order, added to the error for a missing order; ``path_classes``: the class names a path folder may
    name. Raises :class:`LabelOrderError` (one line naming the file and line) when ``order`` is ``None``, when a
    value is outside ``order``, or when any clip's path names a class other than the one ``order`` gives it (the
    count of such clips, the first of them, and the known order that fits the paths).
    """
    if not labels:
        return []
    known = set(path_classes) | (set(order.classes) if order is not None else set())
    first = labels[0]
    if order is None:
        more = f" (one of {len(labels)} integer labels)" if len(labels) > 1 else ""
        raise LabelOrderError(f"{first.where}: integer label '{first.value}'{more}, but no label_order is named, and "
                              "fer_zoo never guesses what an integer means. "
                              f"{hint}{_capital(_advice(labels, candidates, known))}")
    names = []
    for lab in labels:
        name = order.class_of(lab.value)
        if name is None:
            raise LabelOrderError(f"{lab.where}: integer label '{lab.value}' is outside label_order {order.name!r} "
                                  f"({order.span}, base {order.base})")
        names.append(name)
    wrong = [(lab, name, c) for lab, name in zip(labels, names)
             if (c := path_class(lab.path, known)) is not None and c != name]
    if wrong:
        lab, name, named = wrong[0]
        checked = sum(path_class(x.path, known) is not None for x in labels)
        raise LabelOrderError(
            f"{lab.where}: integer label '{lab.value}' reads {name!r} in label_order {order.name!r}, but the clip's "
            f"path {lab.path!r} names {named!r} ({len(wrong)} of the {checked} clips whose paths name a class "
            f"disagree); {_advice(labels, candidates, known)}")
    return names
