"""Generate js/test/fixtures/ot.json from the Python OT (livewidgets.state.text).

The JS port (js/src/ot.js) must agree with Python on every case, emoji and
combining characters included; js/test/ot.test.js replays this file and
tests/js/test_js_build.py checks that it is up to date with the Python code.

Run from the repository root:  python js/scripts/gen_ot_fixtures.py
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

from livewidgets.state import text as ot

OUT = Path(__file__).resolve().parent.parent / "test" / "fixtures" / "ot.json"
SEED = 20261126
CASES = 150

# Code points chosen to break naive implementations: astral emoji (2 units), an emoji
# with a skin-tone modifier (4 units, 2 code points), a flag (2 regional indicators),
# a combining accent, a precomposed accent, CJK, newline and ASCII.
ALPHABET = ["a", "b", "c", " ", "\n", "é", "e\u0301", "\u4e2d", "😀", "👍🏽", "🇫🇷", "\U0001d11e"]


def _text(rng: random.Random, max_pieces: int = 8) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, max_pieces)))


def _edited(rng: random.Random, base: str) -> str:
    """``base`` after 1-3 random replacements at code-point boundaries."""
    text = base
    for _ in range(rng.randint(1, 3)):
        start = rng.randint(0, len(text))
        end = rng.randint(start, min(len(text), start + 3))
        text = text[:start] + _text(rng, 3) + text[end:]
    return text


def _positions(rng: random.Random, text: str, k: int) -> list[int]:
    """Random valid UTF-16 offsets (character boundaries) into ``text``."""
    return [ot.to_utf16(text, rng.randint(0, len(text))) for _ in range(k)]


def build() -> dict[str, Any]:
    """All fixture cases (deterministic for a given Python implementation)."""
    rng = random.Random(SEED)
    cases: dict[str, list[dict[str, Any]]] = {
        "utf16_len": [],
        "diff": [],
        "apply": [],
        "compose": [],
        "transform": [],
        "transform_position": [],
    }
    fixed = [
        ("", ""),
        ("", "😀"),
        ("😀", ""),
        ("a😀b", "a😁b"),  # same high surrogate, different low surrogate
        ("e\u0301", "e\u0300"),
        ("🇫🇷", "🇫🇮"),
        ("👍🏽", "👍🏿"),
        ("aa", "aaa"),
        ("abc", "abc"),
    ]
    pairs = fixed + [(_text(rng), "") for _ in range(CASES)]
    pairs = [
        (old, new if i < len(fixed) else _edited(rng, old)) for i, (old, new) in enumerate(pairs)
    ]
    for old, new in pairs:
        delta = ot.diff(old, new)
        cases["utf16_len"].append({"text": old, "length": ot.utf16_len(old)})
        cases["diff"].append({"old": old, "new": new, "delta": delta})
        cases["apply"].append({"text": old, "delta": delta, "result": ot.apply(old, delta)})
        # Concurrent edits of the same base, then a follow-up edit for compose.
        other = _edited(rng, old)
        b = ot.diff(old, other)
        a2, b2 = ot.transform(delta, b)
        cases["transform"].append(
            {
                "base": old,
                "a": delta,
                "b": b,
                "a2": a2,
                "b2": b2,
                "result": ot.apply(ot.apply(old, delta), b2),
            }
        )
        later = _edited(rng, new)
        c = ot.diff(new, later)
        cases["compose"].append({"a": delta, "b": c, "result": ot.compose(delta, c)})
        for pos in _positions(rng, old, 3):
            for own in (False, True):
                cases["transform_position"].append(
                    {
                        "pos": pos,
                        "delta": delta,
                        "own": own,
                        "result": ot.transform_position(pos, delta, own=own),
                    }
                )
    # Errors both sides must refuse.
    errors = [
        {"op": "apply", "text": "😀", "delta": [1, -1]},  # delete half an emoji
        {"op": "apply", "text": "abc", "delta": [2]},  # wrong base length
        {"op": "apply", "text": "abc", "delta": [1, 0, 2]},  # zero component
    ]
    for case in errors:
        try:
            ot.apply(case["text"], case["delta"])
        except ot.TextOpError:
            continue
        raise AssertionError(f"expected Python to refuse {case}")
    return {"seed": SEED, "alphabet": ALPHABET, "cases": cases, "errors": errors}


def render() -> str:
    """The fixture file's exact text (ASCII: astral characters as surrogate escapes)."""
    data = build()

    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"))

    # One case per line: small, and a changed case shows up as a one-line diff.
    lines = [
        "{",
        f' "seed": {dump(data["seed"])},',
        f' "alphabet": {dump(data["alphabet"])},',
        ' "cases": {',
    ]
    groups = list(data["cases"].items())
    for g, (name, items) in enumerate(groups):
        lines.append(f"  {dump(name)}: [")
        lines += [
            f"   {dump(item)}{',' if i < len(items) - 1 else ''}" for i, item in enumerate(items)
        ]
        lines.append("  ]" + ("," if g < len(groups) - 1 else ""))
    lines += [" },", f' "errors": {dump(data["errors"])}', "}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render(), encoding="ascii")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
