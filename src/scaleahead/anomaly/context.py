"""Contextual anomaly detector (the idea of Smirnov & Ryabko's CAD OSE, published with NAB),
re-implemented here from its algorithm description.

The detector learns *contexts*: pairs (left facts -> right facts). Facts at a step are the
quantised value's bits ("sensor facts"); the left facts of the next step are the current sensor
facts plus the ids of the most active contexts ("neuron facts"), so contexts chain into ever
longer learned sequences. At each row:

* a context is *selected* when all its left facts are present, and *active* when its right
  facts are also all present (the prediction came true); ``1 - active / selected`` is the share
  of confident predictions that failed;
* the row's pair (previous left facts, current facts) is stored as a new zero-level context if
  unseen; when it is new, partial matches around it become candidate new contexts and the share
  of candidates that are really new measures how much of the row was never seen before.

The raw score is the mean of the two shares. A row's score is only emitted when no raw score of
the previous ``rest_rows`` rows reached ``base_threshold`` (one alert per incident), as in the
original. Value range: the original uses the whole file's min/max (not causal); here the range is
the min/max of the first ``warm_rows`` rows widened by ``range_margin`` spans on each side, and
levels beyond it get extra bits (new facts), so every score uses rows <= t only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEURON_OFFSET = 1 << 31  # neuron facts live above every sensor fact


@dataclass(frozen=True)
class ContextConfig:
    base_threshold: float = 0.75  # raw score that starts a rest period (original default)
    rest_rows: int = 120  # NAB runs it with probation / 5: 120 rows on its usual 4032-row file
    max_left_facts: int = 7  # longest left part of a candidate new context (original default)
    max_active: int = 15  # neuron facts carried into the next step (original default)
    value_bits: int = 3  # the value is quantised to 2**bits levels over its range
    warm_rows: int = 600  # rows whose min/max fix the range (scored 0): NAB probation of 4032 rows
    range_margin: float = 1.0  # the range is widened by this many spans on each side


class _Semi:
    """A semi-context: a fact set, and per step how many of its facts are present."""

    __slots__ = ("facts", "size", "matched", "contexts")

    def __init__(self, facts: tuple[int, ...]) -> None:
        self.facts = facts
        self.size = len(facts)
        self.matched: list[int] = []
        # For left semi-contexts: id of the right semi-context -> context id.
        self.contexts: dict[int, int] = {}


class ContextMemory:
    """Left and right semi-contexts indexed by fact, and the contexts that join them."""

    def __init__(self, max_left_facts: int) -> None:
        self.max_left_facts = max_left_facts
        self.ids: tuple[dict, dict] = ({}, {})  # fact tuple -> semi-context id, per side
        self.semis: tuple[list[_Semi], list[_Semi]] = ([], [])
        self.by_fact: tuple[dict, dict] = ({}, {})  # fact -> semi-contexts holding it
        self.crossed: tuple[list[_Semi], list[_Semi]] = ([], [])  # semis with a present fact
        # Per context: [activations, zero_level, left id, right id].
        self.contexts: list[list[int]] = []
        self.fresh: int = -1  # context created by this step's zero-level pair

    def _semi(self, side: int, facts: tuple[int, ...]) -> int:
        ids = self.ids[side]
        sid = ids.get(facts)
        if sid is None:
            sid = ids[facts] = len(self.semis[side])
            semi = _Semi(facts)
            self.semis[side].append(semi)
            for fact in facts:
                self.by_fact[side].setdefault(fact, []).append(semi)
        return sid

    def add_zero_level(self, left: tuple[int, ...], right: tuple[int, ...]) -> bool:
        """Store the observed pair; True if it was not known as a zero-level context."""
        lid, rid = self._semi(0, left), self._semi(1, right)
        links = self.semis[0][lid].contexts
        cid = links.get(rid)
        if cid is None:
            cid = links[rid] = len(self.contexts)
            self.contexts.append([0, 1, lid, rid])
        elif self.contexts[cid][1]:
            return False
        self.contexts[cid][1] = 1
        self.fresh = cid
        return True

    def add_candidates(self, pairs: list[tuple[tuple[int, ...], tuple[int, ...]]]) -> int:
        """Store candidate (non zero-level) contexts; returns how many were new."""
        added = 0
        for left, right in pairs:
            lid, rid = self._semi(0, left), self._semi(1, right)
            links = self.semis[0][lid].contexts
            if rid not in links:
                links[rid] = len(self.contexts)
                self.contexts.append([0, 0, lid, rid])
                added += 1
        return added

    def cross(self, side: int, facts: tuple[int, ...]) -> None:
        """Record, for every semi-context of ``side``, which of ``facts`` it holds."""
        for semi in self.crossed[side]:
            semi.matched = []
        touched: dict[int, _Semi] = {}
        index = self.by_fact[side]
        for fact in facts:
            for semi in index.get(fact, ()):
                semi.matched.append(fact)
                touched[id(semi)] = semi
        self.crossed = (
            (list(touched.values()), self.crossed[1])
            if side == 0
            else (self.crossed[0], list(touched.values()))
        )

    def predictions(
        self, learning: bool
    ) -> tuple[list[tuple[int, int, int, int]], int, list[tuple[tuple[int, ...], tuple[int, ...]]]]:
        """Contexts whose left part is fully present (selected), those also right-complete
        (active, their counter bumped), and candidate new contexts from partial matches."""
        active: list[tuple[int, int, int, int]] = []
        selected = 0
        candidates: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        rights = self.semis[1]
        for left in self.crossed[0]:
            left_full = len(left.matched) == left.size
            short = len(left.matched) <= self.max_left_facts
            for rid, cid in left.contexts.items():
                if cid == self.fresh:
                    continue
                ctx = self.contexts[cid]
                right = rights[rid]
                n_right = len(right.matched)
                if left_full:
                    selected += 1
                    if n_right == right.size:
                        ctx[0] += 1
                        active.append((cid, ctx[0], ctx[2], ctx[3]))
                    elif n_right and ctx[1] and learning and short:
                        candidates.append((tuple(left.matched), tuple(right.matched)))
                elif ctx[1] and learning and n_right == right.size and short:
                    candidates.append((tuple(left.matched), tuple(right.matched)))
        self.fresh = -1
        return active, selected, candidates


class ContextDetector:
    """Streaming contextual detector over a fixed value range: ``update(value)`` scores a row."""

    def __init__(self, value_range: tuple[float, float], config: ContextConfig | None = None):
        self.cfg = config or ContextConfig()
        self.memory = ContextMemory(self.cfg.max_left_facts)
        self.left: tuple[int, ...] = ()
        self.low, high = value_range
        span = high - self.low
        levels = 2**self.cfg.value_bits - 1.0
        self.step = span / levels if span > 0 else 1.0
        self.recent: list[float] = [1.0]  # the original starts resting

    def facts(self, value: float) -> tuple[int, ...]:
        """Bits of the quantised value as facts ``2 * bit_position + bit``; levels outside the
        range take more bits (and a sign fact below it), so they read as new values."""
        level = int(np.floor((value - self.low) / self.step))
        sign = (1 << 30,) if level < 0 else ()
        level = abs(level)
        bits = max(self.cfg.value_bits, level.bit_length())
        return sign + tuple(sorted(2 * k + ((level >> k) & 1) for k in range(bits)))

    def raw(self, sensor: tuple[int, ...]) -> float:
        """Learn from the row and return its raw score (mean of failed and novel shares)."""
        memory = self.memory
        seen: set = set()
        learning = False
        if self.left and sensor:
            pair = (self.left, sensor)
            seen.add(pair)
            learning = memory.add_zero_level(*pair)
        memory.cross(1, sensor)
        active, selected, candidates = memory.predictions(learning)
        seen.update(candidates)
        failed = 1.0 - (len(active) / selected if selected else 0.0)
        active.sort(key=lambda a: (a[1], a[2], a[3]))
        neurons = {NEURON_OFFSET + a[0] for a in active[-self.cfg.max_active :]}
        self.left = tuple(sorted(set(sensor) | neurons))
        added = memory.add_candidates(candidates)
        memory.cross(0, self.left)
        added += 1 if learning else 0
        novel = added / len(seen) if learning and seen else 0.0
        return (failed + novel) / 2.0

    def update(self, value: float) -> float:
        """Raw score of the row, or 0 while resting after a raw score >= base_threshold."""
        score = self.raw(self.facts(value))
        resting = max(self.recent[-self.cfg.rest_rows :]) >= self.cfg.base_threshold
        self.recent.append(score)
        if len(self.recent) > 4 * self.cfg.rest_rows:  # bounded memory on long streams
            del self.recent[: -self.cfg.rest_rows]
        return 0.0 if resting else score


def warmup_range(head: np.ndarray, margin: float) -> tuple[float, float]:
    """The warm-up rows' min/max widened by ``margin`` times their span on each side."""
    low, high = float(np.min(head)), float(np.max(head))
    pad = margin * (high - low)
    return low - pad, high + pad


def context_scores(
    values: np.ndarray,
    config: ContextConfig | None = None,
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Scores in [0, 1] per row. Causal: the range comes from the first ``warm_rows`` rows,
    which score 0 and are learnt from once they have all arrived, so the score of any row
    ``t >= warm_rows`` depends on rows ``<= t`` only. A given ``value_range`` (e.g. the whole
    series' min/max, as in NAB's original, non-causal run) skips the warm-up."""
    cfg = config or ContextConfig()
    x = np.nan_to_num(np.asarray(values, dtype=float))
    out = np.zeros(len(x))
    warm = 0 if value_range is not None else cfg.warm_rows
    if len(x) <= warm:
        return out
    detector = ContextDetector(value_range or warmup_range(x[:warm], cfg.range_margin), cfg)
    for t, value in enumerate(x):
        score = detector.update(float(value))
        out[t] = score if t >= warm else 0.0
    return out
