"""Expectations of SQL drill checks: ``> 0``, ``>= 10``, ``= 42``, ``!= 0``, ``between 1 and 10``."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "=": operator.eq,
    "==": operator.eq,
    "!=": operator.ne,
}
COMPARISON_PATTERN = re.compile(r"^\s*(>=|<=|==|!=|>|<|=)\s*(-?\d+(?:\.\d+)?)\s*$")
BETWEEN_PATTERN = re.compile(
    r"^\s*between\s+(-?\d+(?:\.\d+)?)\s+and\s+(-?\d+(?:\.\d+)?)\s*$", re.IGNORECASE
)


@dataclass(frozen=True)
class Expectation:
    text: str
    test: Callable[[float], bool]

    def holds_for(self, value: object) -> bool:
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
        return self.test(number)


def compile_expectation(text: str) -> Expectation:
    """Turn ``"> 0"`` into a predicate; ValueError with the accepted forms otherwise."""
    match = COMPARISON_PATTERN.match(text)
    if match:
        compare, bound = COMPARISONS[match.group(1)], float(match.group(2))
        return Expectation(text, lambda value: compare(value, bound))
    match = BETWEEN_PATTERN.match(text)
    if match:
        low, high = float(match.group(1)), float(match.group(2))
        if low > high:
            raise ValueError(f"{text!r}: the lower bound is above the upper bound")
        return Expectation(text, lambda value: low <= value <= high)
    raise ValueError(
        f"{text!r} is not an expectation; write e.g. '> 0', '= 42' or 'between 1 and 10'"
    )


def parse_expectation(text: str) -> str:
    """Validator form: check the text compiles, keep the text."""
    compile_expectation(text)
    return text
