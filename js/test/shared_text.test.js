import { afterEach, describe, expect, it, vi } from "vitest";
import widget, { buildMirror, undoKey } from "../src/shared_text.js";
import { EVIL, FakeModel, mount } from "./fake_model.js";

function setup(state = {}) {
  const model = new FakeModel({
    path: "docs/notes",
    value: "hello world",
    rev: 0,
    placeholder: "Write here",
    rows: 5,
    cursors: [],
    cursors_rev: 0,
    error: "",
    ...state,
  });
  const { el, cleanup } = mount(widget, model);
  const textarea = /** @type {HTMLTextAreaElement} */ (el.querySelector("textarea"));
  return { model, el, cleanup, textarea };
}

/** What the browser does when the user types: new value, caret, an input event. */
function type(textarea, value, caret) {
  textarea.value = value;
  textarea.setSelectionRange(caret, caret);
  textarea.dispatchEvent(new Event("input"));
}

afterEach(() => {
  document.body.replaceChildren();
});

describe("SharedText view", () => {
  it("Ctrl-Z / Ctrl-Shift-Z / Ctrl-Y / Cmd-Z ask the kernel, not the textarea", () => {
    const { model, textarea } = setup();
    const press = (/** @type {KeyboardEventInit} */ init) => {
      const event = new KeyboardEvent("keydown", { cancelable: true, ...init });
      textarea.dispatchEvent(event);
      return event.defaultPrevented;
    };
    expect(press({ key: "z", ctrlKey: true })).toBe(true);
    expect(press({ key: "Z", ctrlKey: true, shiftKey: true })).toBe(true);
    expect(press({ key: "y", ctrlKey: true })).toBe(true);
    expect(press({ key: "z", metaKey: true })).toBe(true);
    expect(press({ key: "z" })).toBe(false);
    const sent = model.take().map((/** @type {any} */ m) => m.type);
    expect(sent).toEqual(["undo", "redo", "redo", "undo"]);
    expect(
      undoKey({ key: "z", ctrlKey: true, metaKey: false, shiftKey: false, altKey: true }),
    ).toBe(null);
  });

  it("renders the text with rows and placeholder", () => {
    const { textarea } = setup();
    expect(textarea.value).toBe("hello world");
    expect(Number(textarea.rows)).toBe(5);
    expect(textarea.placeholder).toBe("Write here");
  });

  it("sends an edit (UTF-16 delta against rev) when the user types", () => {
    const { model, textarea } = setup({ value: "a\u{1F600}b", rev: 7 });
    type(textarea, "a\u{1F600}xb", 4);
    expect(model.take()).toEqual([
      { type: "edit", view: expect.any(String), rev: 7, delta: [3, "x", 1], anchor: 4, head: 4 },
    ]);
  });

  it("keeps one edit in flight and sends the buffer on ack", () => {
    const { model, textarea } = setup({ value: "", rev: 0 });
    type(textarea, "a", 1);
    type(textarea, "ab", 2);
    type(textarea, "abc", 3);
    const [first] = model.take();
    expect(first.delta).toEqual(["a"]);
    model.custom({ type: "ack", view: first.view, rev: 1, delta: ["a"] });
    expect(model.take()).toEqual([
      { type: "edit", view: first.view, rev: 1, delta: [1, "bc"], anchor: 3, head: 3 },
    ]);
  });

  it("applies a remote edit and keeps the local caret on its character", () => {
    const { model, textarea } = setup({ value: "hello world", rev: 0 });
    textarea.focus();
    textarea.setSelectionRange(6, 11); // "world" selected
    model.custom({ type: "sync", rev: 1, delta: ["Oh, ", 11] });
    expect(textarea.value).toBe("Oh, hello world");
    expect([textarea.selectionStart, textarea.selectionEnd]).toEqual([10, 15]);
    // Old or duplicate revisions change nothing.
    model.custom({ type: "sync", rev: 1, delta: ["again", 15] });
    expect(textarea.value).toBe("Oh, hello world");
  });

  it("does not lose a keystroke typed while a remote edit arrives", () => {
    const { model, textarea } = setup({ value: "ab", rev: 0 });
    type(textarea, "aXb", 2);
    const [edit] = model.take();
    model.custom({ type: "sync", rev: 1, delta: [2, "!"] }); // concurrent with our X
    expect(textarea.value).toBe("aXb!");
    model.custom({ type: "ack", view: edit.view, rev: 2, delta: [1, "X", 2] });
    type(textarea, "aXYb!", 3);
    expect(model.take()).toEqual([
      { type: "edit", view: edit.view, rev: 2, delta: [2, "Y", 2], anchor: 3, head: 3 },
    ]);
  });

  it("draws peers' carets, selections and name labels (as text, never HTML)", async () => {
    const { model, el } = setup({ value: "hello world" });
    model.update({
      cursors: [
        {
          client_id: "p1",
          anchor: 0,
          head: 5,
          name: EVIL,
          color: "hsl(10, 70%, 45%)",
          active: true,
        },
        { client_id: "p2", anchor: 11, head: 11, name: "Bob", color: "red; background: url(x)" },
      ],
      cursors_rev: 0,
    });
    await vi.waitFor(() => expect(el.querySelectorAll(".lw-caret-label")).toHaveLength(2));
    const labels = [...el.querySelectorAll(".lw-caret-label")].map((l) => l.textContent);
    expect(labels).toEqual([EVIL, "Bob"]);
    expect(el.querySelector("img")).toBeNull();
    expect(el.querySelector(".lw-selection")?.textContent).toBe("hello");
    const carets = [...el.querySelectorAll(".lw-caret")];
    expect(carets.map((c) => c.getAttribute("data-client"))).toEqual(["p1", "p2"]);
    // A colour that is not a plain CSS colour falls back to the theme colour.
    expect(carets[1].style.getPropertyValue("--lw-peer")).toContain("--jp-brand-color1");
  });

  it("moves peers' carets through local and remote edits", async () => {
    const { model, el, textarea } = setup({ value: "abc" });
    model.update({
      cursors: [{ client_id: "p", anchor: 2, head: 2, name: "P", color: "#f00" }],
      cursors_rev: 0,
    });
    type(textarea, "XXabc", 2);
    model.custom({ type: "sync", rev: 1, delta: ["Y", 3] });
    await vi.waitFor(() => expect(el.querySelector(".lw-caret")).not.toBeNull());
    const content = el.querySelector(".lw-text-mirror-content");
    // Text before the caret in the mirror: "XX" (ours) + "Y" (remote) + "ab" = 5 units.
    const before = [];
    for (const node of content.childNodes) {
      if (node.nodeType === 1 && node.classList.contains("lw-caret")) break;
      before.push(node.textContent);
    }
    expect(before.join("")).toBe("XXYab");
  });

  it("folds a name label a while after the peer stopped moving", () => {
    vi.useFakeTimers({
      toFake: [
        "setTimeout",
        "clearTimeout",
        "requestAnimationFrame",
        "cancelAnimationFrame",
        "performance",
      ],
    });
    try {
      const { model, el, textarea } = setup({ value: "abcdef" });
      const label = () => /** @type {HTMLElement} */ (el.querySelector(".lw-caret-label"));
      model.update({
        cursors: [{ client_id: "p", anchor: 4, head: 4, name: "P", color: "#f00" }],
        cursors_rev: 0,
      });
      vi.advanceTimersByTime(50);
      expect(label().classList.contains("lw-folded")).toBe(false);
      vi.advanceTimersByTime(3100);
      expect(label().classList.contains("lw-folded")).toBe(true);
      // Carried along by an edit (ours): still folded. Moved by its owner: open again.
      type(textarea, "Xabcdef", 1);
      // The kernel republishes the same cursor at the same revision (our edit unacked).
      model.update({
        cursors: [{ client_id: "p", anchor: 4, head: 4, name: "P", color: "#f00" }],
        cursors_rev: 0,
      });
      vi.advanceTimersByTime(50);
      expect(label().classList.contains("lw-folded")).toBe(true);
      model.update({
        cursors: [{ client_id: "p", anchor: 1, head: 1, name: "P", color: "#f00" }],
        cursors_rev: 0,
      });
      vi.advanceTimersByTime(50);
      expect(label().classList.contains("lw-folded")).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });

  it("holds cursors published at a revision it has not reached yet", async () => {
    const { model, el } = setup({ value: "ab", rev: 0 });
    model.update({
      cursors: [{ client_id: "p", anchor: 3, head: 3, name: "P", color: "#00f" }],
      cursors_rev: 1,
    });
    expect(el.querySelector(".lw-caret")).toBeNull();
    model.custom({ type: "sync", rev: 1, delta: [2, "c"] });
    await vi.waitFor(() => expect(el.querySelector(".lw-caret")).not.toBeNull());
  });

  it("holds kernel messages during an IME composition", () => {
    const { model, textarea } = setup({ value: "ab", rev: 0 });
    textarea.dispatchEvent(new Event("compositionstart"));
    textarea.value = "a\u3042b"; // uncommitted composition text
    model.custom({ type: "sync", rev: 1, delta: [2, "!"] });
    expect(textarea.value).toBe("a\u3042b");
    expect(model.take()).toEqual([]);
    textarea.setSelectionRange(2, 2);
    textarea.dispatchEvent(new Event("compositionend"));
    expect(textarea.value).toBe("a\u3042b!");
    expect(model.take()).toEqual([
      {
        type: "edit",
        view: expect.any(String),
        rev: 0,
        delta: [1, "\u3042", 1],
        anchor: 2,
        head: 2,
      },
    ]);
  });

  it("starts over on reset", () => {
    const { model, textarea } = setup({ value: "ab" });
    type(textarea, "abc", 3);
    const [edit] = model.take();
    model.custom({ type: "reset", view: edit.view, rev: 5, value: "fresh" });
    expect(textarea.value).toBe("fresh");
    type(textarea, "fresh!", 6);
    const edits = model.take().filter((m) => m.type === "edit");
    expect(edits).toEqual([expect.objectContaining({ rev: 5, delta: [5, "!"] })]);
  });

  it("shows the error trait", () => {
    const { model, el } = setup();
    model.set("error", "edit failed: session closed");
    expect(el.querySelector(".lw-error")?.textContent).toBe("edit failed: session closed");
  });

  it("cleanup removes every listener and the DOM", () => {
    const { model, el, cleanup, textarea } = setup();
    expect(model.listenerCount()).toBeGreaterThan(0);
    cleanup();
    expect(model.listenerCount()).toBe(0);
    expect(el.children).toHaveLength(0);
    type(textarea, "changed", 7); // a detached textarea no longer talks to the model
    expect(model.take()).toEqual([]);
  });
});

describe("buildMirror", () => {
  it("splits the text at selection boundaries and puts carets at heads", () => {
    const { nodes, carets } = buildMirror("abcdef", [
      { client_id: "a", anchor: 1, head: 3, name: "A", color: "#f00" },
      { client_id: "b", anchor: 6, head: 6, name: "B", color: "#0f0" },
    ]);
    const shape = nodes.map((n) =>
      n.nodeType === 3 ? `t:${n.textContent}` : `${n.className}:${n.textContent}`,
    );
    expect(shape).toEqual([
      "t:a",
      "lw-selection:bc",
      "lw-caret:",
      "t:def",
      "lw-caret:",
      "t:\u200b",
    ]);
    expect(carets.map((c) => c.peer.client_id)).toEqual(["a", "b"]);
  });

  it("works on an empty text and clamps stale positions", () => {
    const { carets } = buildMirror("", [
      { client_id: "a", anchor: 4, head: 9, name: "A", color: "#f00" },
    ]);
    expect(carets).toHaveLength(1);
  });
});
