"""Generated tasks (never downloaded): honest stand-ins where the structure is the point.

``number_words``: "004217=four thousand two hundred seventeen". Writing the words is a chain
of decisions where one early mistake (a wrong thousands word) derails everything after it,
the setting where exposure bias shows.
"""

from __future__ import annotations

import numpy as np

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
        "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def below_thousand(n: int) -> list[str]:
    words = []
    if n >= 100:
        words += [ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(TENS[n // 10] + (f"-{ONES[n % 10]}" if n % 10 else ""))
    elif n or not words:
        words.append(ONES[n])
    return words


def number_to_words(n: int) -> str:
    """English words for 0 <= n < 1,000,000, e.g. 4217 -> "four thousand two hundred seventeen"."""
    assert 0 <= n < 1_000_000
    thousands, rest = divmod(n, 1000)
    words = below_thousand(thousands) + ["thousand"] if thousands else []
    if rest or not words:
        words += below_thousand(rest)
    return " ".join(words)


def number_words_lines(count: int, seed: int, digits: int = 6) -> list[str]:
    """``count`` distinct random numbers below 10**digits, zero-padded, as "digits=words" lines."""
    rng = np.random.default_rng(seed)
    numbers = rng.choice(10 ** digits, size=count, replace=False)
    return [f"{n:0{digits}d}={number_to_words(int(n))}" for n in numbers]
