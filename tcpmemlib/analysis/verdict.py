"""``Verdict``: the one-sentence answer an analysis gives, with the numbers it was built from."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Verdict"]


@dataclass(frozen=True)
class Verdict:
    """A short answer: ``label`` (a fixed phrase from the function's documented label set),
    ``text`` (one or a few sentences with the capture's numbers) and ``figures`` (the numbers the text
    quotes, by name, unit in the name: ``*_bytes``, ``*_ratio``, ``*_count``...)."""

    label: str
    text: str
    figures: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        return f"**{self.label}**: {self.text}"
