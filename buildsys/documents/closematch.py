"""Near names for "did you mean" hints: the one ranking every hint in buildsys uses.

difflib alone breaks ties by reverse string order (`Conv.9` before `Conv.0`) and sees `C0nv` as a
different word from `Conv`. Here names are compared after folding look-alike characters
(O/0, l/1/I, S/5, B/8) and case, a name equal to the word after that fold comes first, and equally
close names keep their natural order (`Conv.0`, `Conv.9`, `Conv.10`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

# each look-alike folds onto the digit it is mistaken for (after casefold: I is i, S is s, B is b)
LOOKALIKES = str.maketrans({"o": "0", "l": "1", "i": "1", "|": "1", "s": "5", "b": "8"})
CUTOFF = 0.6
DIGITS = re.compile(r"(\d+)")


def fold(name: str) -> str:
    """The name as a reader might mistake it: look-alikes as digits, any case."""
    return name.casefold().translate(LOOKALIKES)


def natural_key(name: str) -> tuple:
    """`Conv.10` after `Conv.9`: digit runs compare as numbers."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in DIGITS.split(name) if part)


def close_matches(word: str, choices: Iterable[str], n: int = 3, cutoff: float = CUTOFF) -> list[str]:
    """Up to `n` of `choices` nearest to `word`, best first; look-alike spellings of it first of all."""
    target = fold(word)
    matcher = difflib.SequenceMatcher()
    matcher.set_seq2(target)
    scored = []
    for choice in dict.fromkeys(choices):  # unique, first occurrence kept
        if choice == word:
            continue
        folded = fold(choice)
        if folded == target:
            scored.append((2.0, choice))  # differs only by look-alikes or case
            continue
        matcher.set_seq1(folded)
        if matcher.real_quick_ratio() >= cutoff and matcher.quick_ratio() >= cutoff:
            score = matcher.ratio()
            if score >= cutoff:
                scored.append((round(score, 6), choice))
    scored.sort(key=lambda item: (-item[0], natural_key(item[1])))
    return [choice for _, choice in scored[:n]]


def did_you_mean(word: str, choices: Iterable[str], what: str = "") -> str | None:
    """`did you mean 'Conv.0'?` (with `what`, e.g. "op_type": `did you mean op_type 'Conv'?`)."""
    close = close_matches(word, choices, n=1)
    if not close:
        return None
    return f"did you mean {what + ' ' if what else ''}'{close[0]}'?"
