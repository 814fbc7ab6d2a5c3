// Plain-text OT in UTF-16 code units: the browser half of livewidgets.state.text.
//
// A delta spans the whole base text, read left to right:
//   n > 0     retain n units
//   "text"    insert the string (non-empty)
//   n < 0     delete -n units
// Canonical form (what every function here returns, same as the Python module):
// no zero components or empty strings, adjacent components of one kind merged,
// an insert next to a delete comes first (["x", -2], never [-2, "x"]).
// JS strings already count UTF-16 units (string.length, selectionStart), so no
// conversion is needed here; positions inside a surrogate pair are refused like
// in Python. js/test/ot.test.js checks this file against fixtures generated from
// the Python implementation (js/scripts/gen_ot_fixtures.py).

/** @typedef {(number | string)[]} Delta */

export class TextOpError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "TextOpError";
  }
}

/** @param {unknown} c */
const isDelete = (c) => typeof c === "number" && c < 0;
/** @param {unknown} c */
const isRetain = (c) => typeof c === "number" && c > 0;
/** @param {number | string} c */
const size = (c) => (typeof c === "string" ? c.length : Math.abs(c));

/** @param {string} s @param {number} i */
const isHigh = (s, i) => {
  const u = s.charCodeAt(i);
  return u >= 0xd800 && u <= 0xdbff;
};
/** @param {string} s @param {number} i */
const isLow = (s, i) => {
  const u = s.charCodeAt(i);
  return u >= 0xdc00 && u <= 0xdfff;
};

/**
 * True when `offset` lies inside a surrogate pair of `s` (would split an emoji).
 * @param {string} s @param {number} offset
 */
export function splitsPair(s, offset) {
  return offset > 0 && offset < s.length && isLow(s, offset) && isHigh(s, offset - 1);
}

/** @param {Delta} out @param {number | string} comp */
function push(out, comp) {
  if (comp === 0 || comp === "") return;
  const last = out.length ? out[out.length - 1] : undefined;
  if (typeof comp === "string") {
    if (typeof last === "string") {
      out[out.length - 1] = last + comp;
    } else if (isDelete(last)) {
      // Canonical order puts an insert before the delete next to it.
      const prev = out.length >= 2 ? out[out.length - 2] : undefined;
      if (typeof prev === "string") out[out.length - 2] = prev + comp;
      else out.splice(out.length - 1, 0, comp);
    } else {
      out.push(comp);
    }
  } else if (typeof last === "number" && last > 0 === comp > 0) {
    out[out.length - 1] = last + comp;
  } else {
    out.push(comp);
  }
}

/** The canonical form of `delta`. @param {Delta} delta @returns {Delta} */
export function normalize(delta) {
  /** @type {Delta} */
  const out = [];
  for (const comp of delta) push(out, comp);
  return out;
}

/** Check a delta (from the wire) and return it normalized. @param {unknown} delta */
export function validate(delta) {
  if (!Array.isArray(delta)) throw new TextOpError(`delta must be an array, got ${typeof delta}`);
  delta.forEach((comp, i) => {
    const ok =
      (typeof comp === "number" && Number.isInteger(comp) && comp !== 0) ||
      (typeof comp === "string" && comp !== "");
    if (!ok) throw new TextOpError(`delta component ${i} is invalid: ${JSON.stringify(comp)}`);
  });
  return normalize(/** @type {Delta} */ (delta));
}

/** Length of the text `delta` applies to. @param {Delta} delta */
export function baseLength(delta) {
  let n = 0;
  for (const c of delta) if (typeof c === "number") n += Math.abs(c);
  return n;
}

/** Length of the text `delta` produces. @param {Delta} delta */
export function targetLength(delta) {
  let n = 0;
  for (const c of delta) if (!isDelete(c)) n += size(c);
  return n;
}

/** @param {string} s @param {number} offset */
function checkOffset(s, offset) {
  if (offset < 0 || offset > s.length) {
    throw new TextOpError(`offset ${offset} is outside the text (length ${s.length})`);
  }
  if (splitsPair(s, offset)) throw new TextOpError(`offset ${offset} splits a surrogate pair`);
}

/** Apply `delta` to `text`. @param {string} text @param {Delta} delta */
export function apply(text, delta) {
  delta = validate(delta);
  if (baseLength(delta) !== text.length) {
    throw new TextOpError(
      `delta expects a base of ${baseLength(delta)} UTF-16 units but the text has ${text.length}`,
    );
  }
  const parts = [];
  let pos = 0;
  for (const comp of delta) {
    if (typeof comp === "string") {
      parts.push(comp);
      continue;
    }
    const end = pos + Math.abs(comp);
    checkOffset(text, end);
    if (comp > 0) parts.push(text.slice(pos, end));
    pos = end;
  }
  return parts.join("");
}

/** Common prefix length in units, never ending inside a surrogate pair. */
function commonPrefix(/** @type {string} */ a, /** @type {string} */ b) {
  const max = Math.min(a.length, b.length);
  let n = 0;
  while (n < max && a.charCodeAt(n) === b.charCodeAt(n)) n++;
  if (n > 0 && (splitsPair(a, n) || splitsPair(b, n))) n--;
  return n;
}

/** Common suffix length, at most `max`, never starting inside a surrogate pair. */
function commonSuffix(/** @type {string} */ a, /** @type {string} */ b, /** @type {number} */ max) {
  let n = 0;
  while (n < max && a.charCodeAt(a.length - 1 - n) === b.charCodeAt(b.length - 1 - n)) n++;
  if (n > 0 && (splitsPair(a, a.length - n) || splitsPair(b, b.length - n))) n--;
  return n;
}

/**
 * Delta turning `oldText` into `newText`, replacing only what lies between the common
 * ends (the same result as the Python `diff`). With `cursor` (the caret in `newText`
 * after a single insertion or deletion) an ambiguous edit is placed where the user
 * made it: typing "a" after the first "a" of "aa" inserts at 1, not at 2.
 * @param {string} oldText @param {string} newText @param {number} [cursor]
 * @returns {Delta}
 */
export function diff(oldText, newText, cursor) {
  if (oldText === newText) return normalize([oldText.length]);
  if (cursor !== undefined) {
    const hinted = diffAtCursor(oldText, newText, cursor);
    if (hinted) return hinted;
  }
  const start = commonPrefix(oldText, newText);
  const end = commonSuffix(oldText, newText, Math.min(oldText.length, newText.length) - start);
  return normalize([
    start,
    newText.slice(start, newText.length - end),
    -(oldText.length - end - start),
    end,
  ]);
}

/** @param {string} a @param {string} b @param {number} cursor @returns {Delta | null} */
function diffAtCursor(a, b, cursor) {
  const grow = b.length - a.length;
  if (grow === 0 || cursor < 0 || cursor > b.length) return null;
  // Insertion: the new text ends at the caret. Deletion: it started at the caret.
  const start = grow > 0 ? cursor - grow : cursor;
  if (start < 0 || splitsPair(a, start) || splitsPair(b, start)) return null;
  if (a.slice(0, start) !== b.slice(0, start)) return null;
  if (grow > 0) {
    if (a.slice(start) !== b.slice(cursor)) return null;
    return normalize([start, b.slice(start, cursor), a.length - start]);
  }
  if (a.slice(start - grow) !== b.slice(start) || splitsPair(a, start - grow)) return null;
  return normalize([start, grow, a.length - start + grow]);
}

/** Walks a delta, letting callers consume part of a component. */
class Reader {
  /** @param {Delta} delta */
  constructor(delta) {
    this.delta = delta;
    this.i = 0;
    /** @type {number | string | undefined} */
    this.head = delta[0];
  }
  size() {
    if (this.head === undefined) throw new TextOpError("delta ended before the other operand");
    return size(this.head);
  }
  /** Consume `n` units of the head (all of it if undefined) and return them. @param {number} [n] */
  take(n) {
    const head = this.head;
    if (head === undefined) throw new TextOpError("delta ended before the other operand");
    if (n === undefined || n >= size(head)) {
      this.i++;
      this.head = this.delta[this.i];
      return head;
    }
    if (typeof head === "string") {
      if (splitsPair(head, n)) throw new TextOpError(`cannot split an insert inside an emoji`);
      this.head = head.slice(n);
      return head.slice(0, n);
    }
    const sign = head > 0 ? 1 : -1;
    this.head = head - sign * n;
    return sign * n;
  }
}

/** One delta with the effect of `a` then `b`. @param {Delta} a @param {Delta} b */
export function compose(a, b) {
  a = validate(a);
  b = validate(b);
  if (targetLength(a) !== baseLength(b)) {
    throw new TextOpError(
      `cannot compose: first delta produces ${targetLength(a)} units, second expects ${baseLength(b)}`,
    );
  }
  const ra = new Reader(a);
  const rb = new Reader(b);
  /** @type {Delta} */
  const out = [];
  while (ra.head !== undefined || rb.head !== undefined) {
    if (isDelete(ra.head)) {
      push(out, ra.take());
    } else if (typeof rb.head === "string") {
      push(out, rb.take());
    } else {
      const n = Math.min(ra.size(), rb.size());
      const x = ra.take(n);
      const y = rb.take(n);
      if (!isDelete(y)) push(out, x);
      else if (typeof x !== "string") push(out, y);
    }
  }
  return out;
}

/**
 * Rebase two concurrent deltas on each other: returns [a2, b2] with
 * apply(apply(s, a), b2) === apply(apply(s, b), a2). At the same position a's insert
 * goes first (the browser passes its own edit as `a`, like the kernel does).
 * @param {Delta} a @param {Delta} b @returns {[Delta, Delta]}
 */
export function transform(a, b) {
  a = validate(a);
  b = validate(b);
  if (baseLength(a) !== baseLength(b)) {
    throw new TextOpError(
      `cannot transform: different bases (${baseLength(a)} and ${baseLength(b)} units)`,
    );
  }
  const ra = new Reader(a);
  const rb = new Reader(b);
  /** @type {Delta} */
  const a2 = [];
  /** @type {Delta} */
  const b2 = [];
  while (ra.head !== undefined || rb.head !== undefined) {
    if (typeof ra.head === "string") {
      const ins = /** @type {string} */ (ra.take());
      push(a2, ins);
      push(b2, ins.length);
    } else if (typeof rb.head === "string") {
      const ins = /** @type {string} */ (rb.take());
      push(a2, ins.length);
      push(b2, ins);
    } else {
      const n = Math.min(ra.size(), rb.size());
      const x = ra.take(n);
      const y = rb.take(n);
      push(a2, isDelete(y) ? 0 : x);
      push(b2, isDelete(x) ? 0 : y);
    }
  }
  return [a2, b2];
}

/**
 * Move a cursor (UTF-16 offset) through `delta` so it stays by the same character.
 * An insert exactly at the cursor pushes it only if `own`; a cursor inside a deleted
 * range goes to the deletion's start; a stale position is clamped into the text.
 * @param {number} pos @param {Delta} delta @param {boolean} [own]
 */
export function transformPosition(pos, delta, own = false) {
  delta = validate(delta);
  pos = Math.min(Math.max(pos, 0), baseLength(delta));
  let base = 0;
  let shift = 0;
  for (const comp of delta) {
    if (base > pos) break;
    if (typeof comp === "string") {
      if (base < pos || own) shift += comp.length;
    } else if (comp > 0) {
      base += comp;
    } else {
      shift -= Math.max(0, Math.min(-comp, pos - base));
      base -= comp;
    }
  }
  return pos + shift;
}

/** True for a delta that changes nothing (only retains). @param {Delta} delta */
export function isNoop(delta) {
  return delta.every(isRetain);
}
