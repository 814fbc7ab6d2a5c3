import { describe, expect, it } from "vitest";
import { apply, splitsPair, transform } from "../src/ot.js";
import { TextSync } from "../src/text_sync.js";

// The kernel side of the protocol, as src/livewidgets/jupyter/widgets/shared_text.py
// implements it (history of deltas, edits transformed over what came after their rev).
class FakeKernel {
  constructor(value = "") {
    this.doc = value;
    this.rev = 0;
    /** @type {[number, any[]][]} */
    this.history = [];
    /** @type {any[]} */
    this.broadcast = [];
  }
  receive(msg) {
    if (msg.type !== "edit") return;
    let d = msg.delta;
    for (const [r, b] of this.history) if (r > msg.rev) [d] = transform(d, b);
    this.commit(d, msg.view);
  }
  /** A change from elsewhere (a peer, Python code), against the current doc. */
  local(delta) {
    this.commit(delta, null);
  }
  commit(delta, view) {
    this.doc = apply(this.doc, delta);
    this.rev += 1;
    this.history.push([this.rev, delta]);
    this.broadcast.push(
      view ? { type: "ack", view, rev: this.rev, delta } : { type: "sync", rev: this.rev, delta },
    );
  }
}

function seeded(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** A random edit of `text`: insert `token` (or delete a range) at a character boundary. */
function randomEdit(text, rand, token, allowDelete) {
  let at = Math.floor(rand() * (text.length + 1));
  if (splitsPair(text, at)) at -= 1;
  if (allowDelete && text.length && rand() < 0.35) {
    let end = Math.min(text.length, at + 1 + Math.floor(rand() * 3));
    if (splitsPair(text, end)) end += 1;
    return { value: text.slice(0, at) + text.slice(end), caret: at };
  }
  return { value: text.slice(0, at) + token + text.slice(at), caret: at + token.length };
}

/** N views and a kernel with FIFO queues both ways, stepped in a random order. */
function simulate({ seed, views = 3, steps = 400, deletes = true }) {
  const rand = seeded(seed);
  const kernel = new FakeKernel("start\u{1F600}");
  const toKernel = [];
  const clients = Array.from({ length: views }, (_, i) => {
    const inbox = [];
    const sync = new TextSync({
      view: `v${i}`,
      value: kernel.doc,
      rev: 0,
      send: (m) => toKernel.push(m),
    });
    return { sync, inbox };
  });
  const fanOut = () => {
    for (const msg of kernel.broadcast.splice(0)) for (const c of clients) c.inbox.push(msg);
  };
  const tokens = [];
  for (let step = 0; step < steps; step++) {
    const r = rand();
    const token = `<${step}${step % 7 === 0 ? "\u{1F44D}\u{1F3FD}" : ""}>`;
    if (r < 0.3) {
      const c = clients[Math.floor(rand() * clients.length)];
      const { value, caret } = randomEdit(c.sync.value, rand, token, deletes);
      if (value.includes(token)) tokens.push(token);
      c.sync.edit(value, { anchor: caret, head: caret });
    } else if (r < 0.4) {
      const { value } = randomEdit(kernel.doc, rand, token, deletes);
      if (value.includes(token)) tokens.push(token);
      // The kernel's own change, as a minimal delta.
      const at =
        [...Array(Math.min(value.length, kernel.doc.length) + 1).keys()].find(
          (i) => value[i] !== kernel.doc[i],
        ) ?? 0;
      const grow = value.length - kernel.doc.length;
      kernel.local(
        grow > 0
          ? [at, value.slice(at, at + grow), kernel.doc.length - at].filter((x) => x !== 0)
          : [at, grow, kernel.doc.length - at + grow].filter((x) => x !== 0),
      );
      fanOut();
    } else if (r < 0.65) {
      if (toKernel.length) kernel.receive(toKernel.shift());
      fanOut();
    } else {
      const c = clients[Math.floor(rand() * clients.length)];
      if (c.inbox.length) c.sync.receive(c.inbox.shift());
    }
  }
  // Quiesce: deliver everything.
  while (toKernel.length || clients.some((c) => c.inbox.length)) {
    while (toKernel.length) kernel.receive(toKernel.shift());
    fanOut();
    for (const c of clients) while (c.inbox.length) c.sync.receive(c.inbox.shift());
  }
  return { kernel, clients, tokens };
}

describe("TextSync (browser side of the kernel OT)", () => {
  it("sends the first edit at once and buffers the rest until the ack", () => {
    const sent = [];
    const s = new TextSync({ view: "me", value: "ab", rev: 4, send: (m) => sent.push(m) });
    s.edit("aXb", { anchor: 2, head: 2 });
    s.edit("aXYb", { anchor: 3, head: 3 });
    expect(sent).toEqual([
      { type: "edit", view: "me", rev: 4, delta: [1, "X", 1], anchor: 2, head: 2 },
    ]);
    expect(s.buffer).toEqual([2, "Y", 1]);
    s.receive({ type: "ack", view: "me", rev: 5, delta: [1, "X", 1] });
    expect(sent[1]).toEqual({
      type: "edit",
      view: "me",
      rev: 5,
      delta: [2, "Y", 1],
      anchor: 3,
      head: 3,
    });
    s.receive({ type: "ack", view: "me", rev: 6, delta: [2, "Y", 1] });
    expect(s.synchronized).toBe(true);
  });

  it("transforms a remote edit over unacknowledged local ones", () => {
    const sent = [];
    const s = new TextSync({ view: "me", value: "hello", rev: 0, send: (m) => sent.push(m) });
    s.edit("hello!", { anchor: 6, head: 6 });
    const result = s.receive({ type: "sync", rev: 1, delta: ["Oh, ", 5] });
    expect(s.value).toBe("Oh, hello!");
    expect(result.delta).toEqual(["Oh, ", 6]);
    expect(s.selection).toEqual({ anchor: 10, head: 10 });
    expect(s.outstanding).toEqual([9, "!"]);
  });

  it("treats another view's ack as a remote change and ignores old revisions", () => {
    const s = new TextSync({ view: "me", value: "x", rev: 3, send: () => {} });
    expect(s.receive({ type: "ack", view: "other", rev: 3, delta: ["a", 1] })).toBeNull();
    expect(s.receive({ type: "ack", view: "other", rev: 4, delta: ["a", 1] })).toEqual({
      delta: ["a", 1],
      reset: false,
    });
    expect(s.value).toBe("ax");
  });

  it("asks for a resync on a gap and starts over on reset", () => {
    const sent = [];
    const s = new TextSync({ view: "me", value: "x", rev: 1, send: (m) => sent.push(m) });
    s.edit("xy", { anchor: 2, head: 2 });
    expect(s.receive({ type: "sync", rev: 5, delta: [1] })).toBeNull();
    expect(sent.at(-1)).toEqual({ type: "resync", view: "me" });
    expect(s.receive({ type: "reset", view: "someone-else", rev: 9, value: "zz" })).toBeNull();
    expect(s.receive({ type: "reset", view: "me", rev: 9, value: "zz" })).toEqual({
      delta: null,
      reset: true,
    });
    expect([s.value, s.rev, s.synchronized]).toEqual(["zz", 9, true]);
  });

  it("sends cursor moves only when synchronized, deduplicated", () => {
    const sent = [];
    const s = new TextSync({ view: "me", value: "abc", rev: 2, send: (m) => sent.push(m) });
    s.moveCursor({ anchor: 1, head: 3 });
    s.moveCursor({ anchor: 1, head: 3 });
    expect(sent).toEqual([{ type: "cursor", view: "me", rev: 2, anchor: 1, head: 3 }]);
    s.edit("abcd", { anchor: 4, head: 4 });
    s.moveCursor({ anchor: 0, head: 0 });
    expect(sent.map((m) => m.type)).toEqual(["cursor", "edit"]);
    s.receive({ type: "ack", view: "me", rev: 3, delta: [3, "d"] });
    expect(sent.at(-1)).toEqual({ type: "cursor", view: "me", rev: 3, anchor: 0, head: 0 });
  });

  it("sends undo/redo after the edits made before it are acknowledged", () => {
    /** @type {any[]} */
    const sent = [];
    const s = new TextSync({ view: "me", value: "", rev: 0, send: (m) => sent.push(m) });
    s.command("undo");
    expect(sent.at(-1)).toEqual({ type: "undo", view: "me" }); // nothing in flight: at once
    s.edit("a", { anchor: 1, head: 1 });
    s.edit("ab", { anchor: 2, head: 2 }); // buffered behind "a"
    s.command("undo");
    expect(sent.filter((m) => m.type === "undo")).toHaveLength(1);
    s.receive({ type: "ack", view: "me", rev: 1, delta: ["a"] });
    expect(sent.at(-1).type).toBe("edit"); // the buffer goes first
    s.receive({ type: "ack", view: "me", rev: 2, delta: [1, "b"] });
    expect(sent.filter((m) => m.type === "undo")).toHaveLength(2);
  });

  it("maps kernel positions through pending edits (toLocal)", () => {
    const s = new TextSync({ view: "me", value: "abc", rev: 0, send: () => {} });
    s.edit("XXabc", { anchor: 2, head: 2 });
    expect(s.toLocal(1)).toBe(3);
    expect(s.toLocal(0)).toBe(0); // a peer at our insert point stays before it
  });

  it.each([1, 2, 3, 4, 5, 6, 7, 8])(
    "converges, every keystroke once (insert-only, seed %i)",
    (seed) => {
      const { kernel, clients, tokens } = simulate({ seed, deletes: false });
      for (const c of clients) {
        expect(c.sync.value).toBe(kernel.doc);
        expect(c.sync.synchronized).toBe(true);
      }
      // Later inserts may land inside earlier ones, so compare the characters as multisets:
      // every typed character is there exactly once.
      const chars = (/** @type {string} */ t) => Array.from(t).sort();
      expect(chars(kernel.doc)).toEqual(chars("start\u{1F600}" + tokens.join("")));
    },
  );

  it.each([11, 12, 13, 14, 15, 16])("converges with deletes and emoji (seed %i)", (seed) => {
    const { kernel, clients } = simulate({ seed, deletes: true, views: 4 });
    for (const c of clients) expect(c.sync.value).toBe(kernel.doc);
  });
});
