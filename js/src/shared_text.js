// SharedText view: a plain <textarea> plus an overlay that draws peers' carets and
// selections in their colours, with a name label per caret.
//
// The overlay is a "mirror": a div with the textarea's font, padding and wrapping,
// holding the same text in transparent ink, split into spans at every peer's
// selection boundary; it sits exactly over the textarea's padding box and scrolls
// with it (pointer-events: none, so the textarea keeps all input). Sync with the
// kernel is TextSync (text_sync.js).

import { transformPosition } from "./ot.js";
import { TextSync } from "./text_sync.js";
import {
  Disposer,
  errorLine,
  frameScheduler,
  h,
  outbox,
  ownKeyboard,
  readableOn,
  safeColor,
  uid,
} from "./util.js";

/** @typedef {import("./util.js").Model} Model */
/** @typedef {import("./ot.js").Delta} Delta */
/**
 * @typedef {object} Peer  a remote cursor, positions in this view's text
 * @property {string} client_id
 * @property {number} anchor
 * @property {number} head
 * @property {string} name
 * @property {string} color
 * @property {boolean} [active]
 */

// Computed styles the mirror copies so its text wraps exactly like the textarea's.
const MIRRORED = [
  "font-family",
  "font-size",
  "font-weight",
  "font-style",
  "font-variant",
  "letter-spacing",
  "word-spacing",
  "line-height",
  "text-transform",
  "text-indent",
  "tab-size",
  "padding-top",
  "padding-right",
  "padding-bottom",
  "padding-left",
];

// How long a peer's name label stays open after they move their cursor (ms).
const LABEL_MS = 3000;

/** @param {Peer[]} peers @param {Delta} delta @returns {Peer[]} */
function movePeers(peers, delta) {
  return peers.map((p) => ({
    ...p,
    anchor: transformPosition(p.anchor, delta),
    head: transformPosition(p.head, delta),
  }));
}

/**
 * The mirror's content: the text split at every peer's boundary, selections as
 * tinted spans, carets as zero-width spans. Pure DOM building, no layout.
 * @param {string} text @param {Peer[]} peers
 * @returns {{nodes: Node[], carets: {peer: Peer, el: HTMLElement}[]}}
 */
export function buildMirror(text, peers) {
  const clamp = (/** @type {number} */ n) => Math.max(0, Math.min(n, text.length));
  const ranges = peers.map((p) => {
    const a = clamp(p.anchor);
    const b = clamp(p.head);
    return { peer: p, from: Math.min(a, b), to: Math.max(a, b), head: b };
  });
  const points = [...new Set([0, text.length, ...ranges.flatMap((r) => [r.from, r.to])])].sort(
    (x, y) => x - y,
  );
  /** @type {Node[]} */
  const nodes = [];
  /** @type {{peer: Peer, el: HTMLElement}[]} */
  const carets = [];
  const caretsAt = (/** @type {number} */ pos) => {
    for (const r of ranges) {
      if (r.head !== pos) continue;
      const color = safeColor(r.peer.color);
      const el = h("span", {
        className: `lw-caret${r.peer.active === false ? " lw-inactive" : ""}`,
        style: { "--lw-peer": color },
        attrs: { "data-client": String(r.peer.client_id) },
      });
      carets.push({ peer: r.peer, el });
      nodes.push(el);
    }
  };
  for (let i = 0; i < points.length - 1; i++) {
    const [from, to] = [points[i], points[i + 1]];
    caretsAt(from);
    const piece = text.slice(from, to);
    const cover = ranges.find((r) => r.from < r.to && r.from <= from && to <= r.to);
    if (cover) {
      nodes.push(
        h(
          "span",
          { className: "lw-selection", style: { "--lw-peer": safeColor(cover.peer.color) } },
          [piece],
        ),
      );
    } else {
      nodes.push(document.createTextNode(piece));
    }
  }
  caretsAt(text.length); // the loop stops before the last point
  // A trailing newline only gets its line box if something follows it.
  nodes.push(document.createTextNode("\u200b"));
  return { nodes, carets };
}

/**
 * "undo", "redo" or null for a key press: Ctrl-Z / Ctrl-Shift-Z / Ctrl-Y (Cmd on macOS).
 * @param {{key: string, ctrlKey: boolean, metaKey: boolean, shiftKey: boolean, altKey: boolean}} e
 * @returns {"undo" | "redo" | null}
 */
export function undoKey(e) {
  if (!(e.ctrlKey || e.metaKey) || e.altKey) return null;
  const key = e.key.toLowerCase();
  if (key === "z") return e.shiftKey ? "redo" : "undo";
  if (key === "y" && !e.shiftKey) return "redo";
  return null;
}

/** @param {{model: Model}} _ctx */
function initialize(_ctx) {}

/** @param {{model: Model, el: HTMLElement}} ctx */
function render({ model, el }) {
  const d = new Disposer();
  const textarea = /** @type {HTMLTextAreaElement} */ (
    h("textarea", {
      className: "lw-text-input",
      attrs: { spellcheck: "false", "aria-label": `shared text ${model.get("path") ?? ""}` },
    })
  );
  const content = h("div", { className: "lw-text-mirror-content" });
  const overlay = h("div", { className: "lw-text-overlay", attrs: { "aria-hidden": "true" } }, [
    content,
  ]);
  const labels = h("div", { className: "lw-text-labels", attrs: { "aria-hidden": "true" } });
  const wrap = h("div", { className: "lw-text-wrap" }, [textarea, overlay, labels]);
  // "Alice is editing": quiet, and read out politely by screen readers.
  const editing = h("div", {
    className: "lw-muted lw-editing",
    attrs: { role: "status", "aria-live": "polite" },
  });
  const showEditing = () => {
    editing.textContent = String(model.get("editing_hint") ?? "");
  };
  const root = h("div", { className: "lw-widget lw-text" }, [wrap, editing, errorLine(model, d)]);
  const out = outbox(model, d, root);
  root.append(out.line);
  el.append(root);
  d.add(() => root.remove());
  ownKeyboard(root, d);

  const sync = new TextSync({
    view: uid(),
    value: String(model.get("value") ?? ""),
    rev: Number(model.get("rev") ?? 0),
    send: (msg) => out.send(msg),
  });
  textarea.value = sync.value;
  /** @type {Peer[]} */
  let peers = [];
  /** @type {number | null} cursors published at a revision this view has not reached */
  let cursorsPending = null;
  let composing = false;
  /** @type {Map<string, number>} performance.now() when each peer last moved its cursor */
  const movedAt = new Map();
  /** @type {ReturnType<typeof setTimeout> | null} redraw when a label should fold */
  let foldTimer = null;
  d.add(() => {
    if (foldTimer !== null) clearTimeout(foldTimer);
  });
  /** @type {any[]} kernel messages held back while an IME composition is open */
  const held = [];

  const schedule = frameScheduler(draw, d);

  function selection() {
    const { selectionStart: s, selectionEnd: e } = textarea;
    return textarea.selectionDirection === "backward"
      ? { anchor: e, head: s }
      : { anchor: s, head: e };
  }

  function onInput(/** @type {InputEvent | undefined} */ event) {
    if (composing || event?.isComposing) return;
    const delta = sync.edit(textarea.value, selection());
    if (delta) {
      peers = movePeers(peers, delta);
      schedule();
    }
  }

  function onSelect() {
    if (!composing && document.activeElement === textarea) sync.moveCursor(selection());
  }

  /** @param {string} value @param {Delta | null} delta */
  function showText(value, delta) {
    const { selectionStart: s, selectionEnd: e, selectionDirection: dir } = textarea;
    const { scrollTop, scrollLeft } = textarea;
    textarea.value = value;
    const move = (/** @type {number} */ p) =>
      delta ? transformPosition(p, delta) : Math.min(p, value.length);
    textarea.setSelectionRange(move(s), move(e), dir ?? "none");
    textarea.scrollTop = scrollTop;
    textarea.scrollLeft = scrollLeft;
  }

  function adoptCursors() {
    const rev = Number(model.get("cursors_rev") ?? 0);
    if (rev > sync.rev) {
      cursorsPending = rev; // positions in a text this view has not received yet
      return;
    }
    cursorsPending = null;
    const list = model.get("cursors");
    const before = new Map(peers.map((p) => [p.client_id, p]));
    const now = performance.now();
    peers = (Array.isArray(list) ? list : []).map((c) => {
      const peer = {
        client_id: String(c.client_id),
        name: String(c.name ?? ""),
        color: String(c.color ?? ""),
        active: c.active !== false,
        anchor: sync.toLocal(Number(c.anchor) || 0),
        head: sync.toLocal(Number(c.head) || 0),
      };
      // Moved by its owner (not just carried along by edits, which we applied too):
      // show the name label for a while.
      const old = before.get(peer.client_id);
      if (!old || old.anchor !== peer.anchor || old.head !== peer.head) {
        movedAt.set(peer.client_id, now);
      }
      return peer;
    });
    schedule();
  }

  function handle(/** @type {any} */ msg) {
    const result = sync.receive(msg);
    if (result?.reset) {
      showText(sync.value, null);
      adoptCursors();
    } else if (result?.delta) {
      showText(sync.value, result.delta);
      peers = movePeers(peers, result.delta);
    }
    if (cursorsPending !== null && cursorsPending <= sync.rev) adoptCursors();
    schedule();
  }

  function onMessage(/** @type {any} */ msg) {
    if (composing) held.push(msg);
    else handle(msg);
  }

  function layout() {
    const style = getComputedStyle(textarea);
    for (const name of MIRRORED) content.style.setProperty(name, style.getPropertyValue(name));
    Object.assign(overlay.style, {
      top: `${textarea.offsetTop + textarea.clientTop}px`,
      left: `${textarea.offsetLeft + textarea.clientLeft}px`,
      width: `${textarea.clientWidth}px`,
      height: `${textarea.clientHeight}px`,
    });
    content.style.transform = `translate(${-textarea.scrollLeft}px, ${-textarea.scrollTop}px)`;
  }

  function draw() {
    if (composing) return; // the textarea holds uncommitted IME text
    if (peers.length === 0) {
      content.replaceChildren();
      labels.replaceChildren();
      return;
    }
    layout();
    const { nodes, carets } = buildMirror(sync.value, peers);
    content.replaceChildren(...nodes);
    const box = overlay.getBoundingClientRect();
    const origin = wrap.getBoundingClientRect();
    const now = performance.now();
    let nextFold = Infinity;
    labels.replaceChildren(
      ...carets.map(({ peer, el: caret }) => {
        const color = safeColor(peer.color);
        // The name shows for LABEL_MS after the peer moved, then folds into a small
        // flag on the caret so it does not hide the text around it.
        const shownFor = LABEL_MS - (now - (movedAt.get(peer.client_id) ?? -Infinity));
        const folded = shownFor <= 0;
        if (!folded) nextFold = Math.min(nextFold, shownFor);
        const label = h("div", {
          className: `lw-caret-label${peer.active === false ? " lw-inactive" : ""}`,
          text: peer.name || "anonymous",
          title: peer.name || "anonymous",
          style: { "background-color": color, color: readableOn(color) },
        });
        const r = caret.getBoundingClientRect();
        const visible = r.bottom > box.top && r.top < box.bottom && r.left <= box.right;
        label.hidden = !visible && box.height > 0;
        // Above the caret, or below its line when there is no room above.
        const above = r.top - box.top >= 14;
        label.style.left = `${Math.max(0, r.left - origin.left)}px`;
        label.style.top =
          above || folded ? `${r.top - origin.top}px` : `${r.bottom - origin.top}px`;
        label.classList.toggle("lw-below", !above && !folded);
        label.classList.toggle("lw-folded", folded);
        return label;
      }),
    );
    if (foldTimer !== null) clearTimeout(foldTimer);
    foldTimer = Number.isFinite(nextFold) ? setTimeout(schedule, nextFold + 20) : null;
  }

  textarea.rows = Number(model.get("rows") ?? 8);
  textarea.placeholder = String(model.get("placeholder") ?? "");
  d.model(model, "change:rows", () => {
    textarea.rows = Number(model.get("rows") ?? 8);
    schedule();
  });
  d.model(model, "change:placeholder", () => {
    textarea.placeholder = String(model.get("placeholder") ?? "");
  });
  d.model(model, "msg:custom", onMessage);
  d.model(model, "change:cursors", adoptCursors);
  d.model(model, "change:editing_hint", showEditing);
  showEditing();
  d.model(model, "change:cursors_rev", adoptCursors);
  // Undo/redo are the room's (your own edits of this text, never a peer's), not the
  // textarea's: its native history knows nothing of peers' edits.
  function onKeydown(/** @type {KeyboardEvent} */ event) {
    const action = undoKey(event);
    if (!action) return;
    event.preventDefault();
    if (composing) return;
    sync.command(action);
  }

  d.on(textarea, "keydown", onKeydown);
  d.on(textarea, "beforeinput", (/** @type {InputEvent} */ event) => {
    // The browser's own Edit menu / gestures: route them to the room too.
    if (event.inputType === "historyUndo" || event.inputType === "historyRedo") {
      event.preventDefault();
      sync.command(event.inputType === "historyUndo" ? "undo" : "redo");
    }
  });
  d.on(textarea, "input", onInput);
  d.on(textarea, "select", onSelect);
  d.on(textarea, "keyup", onSelect);
  d.on(textarea, "mouseup", onSelect);
  d.on(textarea, "focus", onSelect);
  d.on(document, "selectionchange", onSelect);
  d.on(textarea, "scroll", schedule);
  d.on(textarea, "compositionstart", () => {
    composing = true;
  });
  d.on(textarea, "compositionend", () => {
    composing = false;
    onInput(undefined);
    for (const msg of held.splice(0)) handle(msg);
    schedule();
  });
  if (typeof ResizeObserver !== "undefined") {
    const observer = new ResizeObserver(() => schedule());
    observer.observe(textarea);
    d.add(() => observer.disconnect());
  }
  adoptCursors();
  return () => d.dispose();
}

export default { initialize, render };
