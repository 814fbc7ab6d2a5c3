import { describe, expect, it } from "vitest";
import {
  TextOpError,
  apply,
  compose,
  diff,
  normalize,
  transform,
  transformPosition,
  validate,
} from "../src/ot.js";
import fixtures from "./fixtures/ot.json";

// Generated from the Python implementation: js/scripts/gen_ot_fixtures.py
const { cases } = fixtures;

describe("ot.js agrees with livewidgets.state.text (fixtures)", () => {
  it("has fixtures with astral and combining characters", () => {
    expect(fixtures.alphabet).toContain("\u{1F600}");
    expect(fixtures.alphabet).toContain("e\u0301");
    expect(cases.diff.length).toBeGreaterThan(100);
  });

  it("counts UTF-16 units like Python utf16_len", () => {
    for (const c of cases.utf16_len) expect(c.text.length).toBe(c.length);
  });

  it("diff", () => {
    for (const c of cases.diff) expect(diff(c.old, c.new), JSON.stringify(c)).toEqual(c.delta);
  });

  it("apply", () => {
    for (const c of cases.apply) expect(apply(c.text, c.delta)).toBe(c.result);
  });

  it("compose", () => {
    for (const c of cases.compose) expect(compose(c.a, c.b), JSON.stringify(c)).toEqual(c.result);
  });

  it("transform (and both orders converge)", () => {
    for (const c of cases.transform) {
      const [a2, b2] = transform(c.a, c.b);
      expect([a2, b2], JSON.stringify(c)).toEqual([c.a2, c.b2]);
      expect(apply(apply(c.base, c.b), a2)).toBe(c.result);
      expect(apply(apply(c.base, c.a), b2)).toBe(c.result);
    }
  });

  it("transformPosition", () => {
    for (const c of cases.transform_position) {
      expect(transformPosition(c.pos, c.delta, c.own), JSON.stringify(c)).toBe(c.result);
    }
  });

  it("refuses what Python refuses", () => {
    for (const c of fixtures.errors) expect(() => apply(c.text, c.delta)).toThrow(TextOpError);
  });
});

describe("ot.js", () => {
  it("keeps deltas canonical: insert before delete, merged runs", () => {
    expect(normalize([2, -1, "x", 1, 1])).toEqual([2, "x", -1, 2]);
    expect(normalize([0, "", 3])).toEqual([3]);
    expect(() => validate([1, 0])).toThrow(TextOpError);
    expect(() => validate("nope")).toThrow(TextOpError);
  });

  it("never splits an emoji in diff", () => {
    // Same high surrogate, different low one: the change must cover the whole emoji.
    expect(diff("a\u{1F600}b", "a\u{1F601}b")).toEqual([1, "\u{1F601}", -2, 1]);
    expect(apply("a\u{1F600}b", diff("a\u{1F600}b", "a\u{1F601}b"))).toBe("a\u{1F601}b");
  });

  it("places an ambiguous edit at the caret when given one", () => {
    // Typing "a" after the first "a": greedy diff says position 2, the caret says 1.
    expect(diff("aa", "aaa")).toEqual([2, "a"]);
    expect(diff("aa", "aaa", 2)).toEqual([1, "a", 1]);
    // Backspace over the middle "b" of "abbc" leaves the caret at 1.
    expect(diff("abbc", "abc", 1)).toEqual([1, -1, 2]);
    // A hint that does not explain the edit is ignored.
    expect(diff("abc", "xbc", 3)).toEqual(diff("abc", "xbc"));
    // Never inside a surrogate pair.
    expect(diff("\u{1F600}", "\u{1F600}\u{1F600}", 3)).toEqual([2, "\u{1F600}"]);
  });

  it("moves cursors: own inserts push, remote ones do not, deletes collapse", () => {
    expect(transformPosition(2, [2, "xy", 1])).toBe(2);
    expect(transformPosition(2, [2, "xy", 1], true)).toBe(4);
    expect(transformPosition(2, [1, -2])).toBe(1);
    expect(transformPosition(99, [3])).toBe(3);
  });

  it("transform puts the first operand's insert first", () => {
    const [a2, b2] = transform(["A", 1], ["B", 1]);
    expect(apply(apply("x", ["A", 1]), b2)).toBe("ABx");
    expect(apply(apply("x", ["B", 1]), a2)).toBe("ABx");
  });
});
