/* livewidgets build: sources sha256:bf29bf092cb249e7bd28750350ee0ad169e687995ca853aa89c2e82613b66f13 (esbuild 0.28.2) */

// src/ot.js
var TextOpError = class extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "TextOpError";
  }
};
var isDelete = (c) => typeof c === "number" && c < 0;
var isRetain = (c) => typeof c === "number" && c > 0;
var size = (c) => typeof c === "string" ? c.length : Math.abs(c);
var isHigh = (s, i) => {
  const u = s.charCodeAt(i);
  return u >= 55296 && u <= 56319;
};
var isLow = (s, i) => {
  const u = s.charCodeAt(i);
  return u >= 56320 && u <= 57343;
};
function splitsPair(s, offset) {
  return offset > 0 && offset < s.length && isLow(s, offset) && isHigh(s, offset - 1);
}
function push(out, comp) {
  if (comp === 0 || comp === "") return;
  const last = out.length ? out[out.length - 1] : void 0;
  if (typeof comp === "string") {
    if (typeof last === "string") {
      out[out.length - 1] = last + comp;
    } else if (isDelete(last)) {
      const prev = out.length >= 2 ? out[out.length - 2] : void 0;
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
function normalize(delta) {
  const out = [];
  for (const comp of delta) push(out, comp);
  return out;
}
function validate(delta) {
  if (!Array.isArray(delta)) throw new TextOpError(`delta must be an array, got ${typeof delta}`);
  delta.forEach((comp, i) => {
    const ok = typeof comp === "number" && Number.isInteger(comp) && comp !== 0 || typeof comp === "string" && comp !== "";
    if (!ok) throw new TextOpError(`delta component ${i} is invalid: ${JSON.stringify(comp)}`);
  });
  return normalize(
    /** @type {Delta} */
    delta
  );
}
function baseLength(delta) {
  let n = 0;
  for (const c of delta) if (typeof c === "number") n += Math.abs(c);
  return n;
}
function targetLength(delta) {
  let n = 0;
  for (const c of delta) if (!isDelete(c)) n += size(c);
  return n;
}
function checkOffset(s, offset) {
  if (offset < 0 || offset > s.length) {
    throw new TextOpError(`offset ${offset} is outside the text (length ${s.length})`);
  }
  if (splitsPair(s, offset)) throw new TextOpError(`offset ${offset} splits a surrogate pair`);
}
function apply(text, delta) {
  delta = validate(delta);
  if (baseLength(delta) !== text.length) {
    throw new TextOpError(
      `delta expects a base of ${baseLength(delta)} UTF-16 units but the text has ${text.length}`
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
function commonPrefix(a, b) {
  const max = Math.min(a.length, b.length);
  let n = 0;
  while (n < max && a.charCodeAt(n) === b.charCodeAt(n)) n++;
  if (n > 0 && (splitsPair(a, n) || splitsPair(b, n))) n--;
  return n;
}
function commonSuffix(a, b, max) {
  let n = 0;
  while (n < max && a.charCodeAt(a.length - 1 - n) === b.charCodeAt(b.length - 1 - n)) n++;
  if (n > 0 && (splitsPair(a, a.length - n) || splitsPair(b, b.length - n))) n--;
  return n;
}
function diff(oldText, newText, cursor) {
  if (oldText === newText) return normalize([oldText.length]);
  if (cursor !== void 0) {
    const hinted = diffAtCursor(oldText, newText, cursor);
    if (hinted) return hinted;
  }
  const start = commonPrefix(oldText, newText);
  const end = commonSuffix(oldText, newText, Math.min(oldText.length, newText.length) - start);
  return normalize([
    start,
    newText.slice(start, newText.length - end),
    -(oldText.length - end - start),
    end
  ]);
}
function diffAtCursor(a, b, cursor) {
  const grow = b.length - a.length;
  if (grow === 0 || cursor < 0 || cursor > b.length) return null;
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
var Reader = class {
  /** @param {Delta} delta */
  constructor(delta) {
    this.delta = delta;
    this.i = 0;
    this.head = delta[0];
  }
  size() {
    if (this.head === void 0) throw new TextOpError("delta ended before the other operand");
    return size(this.head);
  }
  /** Consume `n` units of the head (all of it if undefined) and return them. @param {number} [n] */
  take(n) {
    const head = this.head;
    if (head === void 0) throw new TextOpError("delta ended before the other operand");
    if (n === void 0 || n >= size(head)) {
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
};
function compose(a, b) {
  a = validate(a);
  b = validate(b);
  if (targetLength(a) !== baseLength(b)) {
    throw new TextOpError(
      `cannot compose: first delta produces ${targetLength(a)} units, second expects ${baseLength(b)}`
    );
  }
  const ra = new Reader(a);
  const rb = new Reader(b);
  const out = [];
  while (ra.head !== void 0 || rb.head !== void 0) {
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
function transform(a, b) {
  a = validate(a);
  b = validate(b);
  if (baseLength(a) !== baseLength(b)) {
    throw new TextOpError(
      `cannot transform: different bases (${baseLength(a)} and ${baseLength(b)} units)`
    );
  }
  const ra = new Reader(a);
  const rb = new Reader(b);
  const a2 = [];
  const b2 = [];
  while (ra.head !== void 0 || rb.head !== void 0) {
    if (typeof ra.head === "string") {
      const ins = (
        /** @type {string} */
        ra.take()
      );
      push(a2, ins);
      push(b2, ins.length);
    } else if (typeof rb.head === "string") {
      const ins = (
        /** @type {string} */
        rb.take()
      );
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
function transformPosition(pos, delta, own = false) {
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
function isNoop(delta) {
  return delta.every(isRetain);
}

// src/text_sync.js
var TextSync = class {
  /**
   * @param {object} options
   * @param {string} options.view   this view's id (tells its acks from other views')
   * @param {string} options.value  the text at `rev`
   * @param {number} options.rev
   * @param {(msg: Message) => void} options.send
   */
  constructor({ view, value, rev, send }) {
    this.view = view;
    this.value = value;
    this.rev = rev;
    this.send = send;
    this.outstanding = null;
    this.buffer = null;
    this.selection = null;
    this.sentSelection = null;
    this.commands = [];
  }
  /**
   * Ask the kernel to undo or redo (its session's own edits of this text). Sent after
   * every edit made before it is acknowledged, so it undoes the latest keystrokes.
   * @param {"undo" | "redo"} type
   */
  command(type) {
    this.commands.push(type);
    if (this.outstanding === null) this._flushCommands();
  }
  _flushCommands() {
    for (const type of this.commands.splice(0)) this.send({ type, view: this.view });
  }
  get synchronized() {
    return this.outstanding === null;
  }
  /**
   * The user changed the text to `value` (an input event); `selection` is the caret after.
   * @param {string} value @param {Selection} selection
   * @returns {Delta | null} the local delta (null if nothing changed)
   */
  edit(value, selection) {
    const delta = diff(this.value, value, selection.head);
    this.value = value;
    this.selection = selection;
    if (isNoop(delta)) return null;
    if (this.outstanding === null) {
      this.outstanding = delta;
      this._sendEdit(delta);
    } else {
      this.buffer = this.buffer === null ? delta : compose(this.buffer, delta);
    }
    return delta;
  }
  /** The caret moved without an edit. @param {Selection} selection */
  moveCursor(selection) {
    this.selection = selection;
    this._flushCursor();
  }
  /**
   * Handle a kernel message.
   * @param {Message} msg
   * @returns {{delta: Delta | null, reset: boolean} | null} what to apply to the display
   *   (`delta` against the text before, or a full reset to `this.value`), null if nothing.
   */
  receive(msg) {
    if (!msg || typeof msg !== "object") return null;
    if (msg.type === "reset") {
      if (msg.view != null && msg.view !== this.view) return null;
      this.outstanding = this.buffer = null;
      this.value = String(msg.value ?? "");
      this.rev = msg.rev;
      this.sentSelection = null;
      this._flushCursor();
      return { delta: null, reset: true };
    }
    if (msg.type === "ack" && msg.view === this.view) return this._ack(msg.rev);
    if (msg.type === "ack" || msg.type === "sync") return this._remote(msg.rev, msg.delta);
    return null;
  }
  /** @param {number} rev */
  _ack(rev) {
    if (this.outstanding === null) return null;
    this.rev = rev;
    this.outstanding = this.buffer;
    this.buffer = null;
    if (this.outstanding !== null) this._sendEdit(this.outstanding);
    else {
      this._flushCommands();
      this._flushCursor();
    }
    return null;
  }
  /** @param {number} rev @param {Delta} delta */
  _remote(rev, delta) {
    if (typeof rev !== "number" || rev <= this.rev) return null;
    if (rev !== this.rev + 1) {
      this.send({ type: "resync", view: this.view });
      return null;
    }
    let d = delta;
    try {
      if (this.outstanding !== null) [this.outstanding, d] = transform(this.outstanding, d);
      if (this.buffer !== null) [this.buffer, d] = transform(this.buffer, d);
      this.value = apply(this.value, d);
    } catch (error) {
      console.warn("[anywidget] livewidgets: cannot apply a remote edit, resyncing", error);
      this.send({ type: "resync", view: this.view });
      return null;
    }
    this.rev = rev;
    this.selection = moveSelection(this.selection, d);
    this.sentSelection = moveSelection(this.sentSelection, d);
    return { delta: d, reset: false };
  }
  /**
   * Map a position given at the kernel's `rev` into this view's text (through the
   * edits the kernel has not seen yet).
   * @param {number} pos
   */
  toLocal(pos) {
    if (this.outstanding !== null) pos = transformPosition(pos, this.outstanding);
    if (this.buffer !== null) pos = transformPosition(pos, this.buffer);
    return Math.min(Math.max(pos, 0), this.value.length);
  }
  /** @param {Delta} delta */
  _sendEdit(delta) {
    const sel = this.selection ?? { anchor: 0, head: 0 };
    this.sentSelection = sel;
    this.send({ type: "edit", view: this.view, rev: this.rev, delta, ...sel });
  }
  _flushCursor() {
    const sel = this.selection;
    if (sel === null || this.outstanding !== null) return;
    const last = this.sentSelection;
    if (last && last.anchor === sel.anchor && last.head === sel.head) return;
    this.sentSelection = sel;
    this.send({ type: "cursor", view: this.view, rev: this.rev, ...sel });
  }
};
function moveSelection(sel, delta) {
  if (sel === null) return null;
  return { anchor: transformPosition(sel.anchor, delta), head: transformPosition(sel.head, delta) };
}

// src/util.js
function h(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  if (props.className) node.className = props.className;
  if (props.text !== void 0) node.textContent = props.text;
  if (props.title !== void 0) node.title = props.title;
  for (const [key, value] of Object.entries(props.attrs ?? {})) node.setAttribute(key, value);
  for (const [key, value] of Object.entries(props.style ?? {})) node.style.setProperty(key, value);
  for (const child of children) {
    if (child === null || child === void 0 || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}
var Disposer = class {
  constructor() {
    this.fns = [];
  }
  /** @param {() => void} fn */
  add(fn) {
    this.fns.push(fn);
    return fn;
  }
  /**
   * @param {EventTarget} target @param {string} type
   * @param {(event: any) => void} fn @param {AddEventListenerOptions} [options]
   */
  on(target, type, fn, options) {
    target.addEventListener(type, fn, options);
    this.add(() => target.removeEventListener(type, fn, options));
  }
  /** `model.on` with its `model.off`. @param {Model} model @param {string} event @param {(...args: any[]) => void} fn */
  model(model, event, fn) {
    model.on(event, fn);
    this.add(() => model.off(event, fn));
  }
  dispose() {
    for (const fn of this.fns.splice(0).reverse()) {
      try {
        fn();
      } catch (error) {
        console.warn("[anywidget] livewidgets: cleanup failed", error);
      }
    }
  }
};
var counter = 0;
function ownKeyboard(root, disposer) {
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  disposer.on(root, "keydown", (event) => event.stopPropagation());
}
function uid() {
  counter += 1;
  const random = Math.random().toString(36).slice(2, 10);
  return `v${Date.now().toString(36)}${counter}${random}`;
}
var COLOR = /^(#[0-9a-f]{3,8}|(rgba?|hsla?)\([0-9.,%\s/a-z+-]*\)|[a-z]{3,30})$/i;
var FALLBACK = "var(--jp-brand-color1, #1976d2)";
function safeColor(color) {
  return typeof color === "string" && COLOR.test(color.trim()) ? color.trim() : FALLBACK;
}
function parseColor(color) {
  const c = color.trim().toLowerCase();
  let m = /^#([0-9a-f]{3}|[0-9a-f]{6})([0-9a-f]{2})?$/.exec(c);
  if (m) {
    const hex = m[1].length === 3 ? [...m[1]].map((x) => x + x).join("") : m[1];
    const byte = (i) => parseInt(hex.slice(i, i + 2), 16) / 255;
    return [byte(0), byte(2), byte(4)];
  }
  m = /^rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)/.exec(c);
  if (m) {
    const channel = (x) => Math.min(255, Number(x)) / 255;
    return [channel(m[1]), channel(m[2]), channel(m[3])];
  }
  m = /^hsla?\(\s*([\d.]+)(?:deg)?[\s,]+([\d.]+)%[\s,]+([\d.]+)%/.exec(c);
  if (m) {
    const hue = Number(m[1]) % 360;
    const s = Number(m[2]) / 100;
    const l = Number(m[3]) / 100;
    const k = (n) => (n + hue / 30) % 12;
    const a = s * Math.min(l, 1 - l);
    const f = (n) => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
    return [f(0), f(8), f(4)];
  }
  return null;
}
function readableOn(color) {
  const rgb = parseColor(color);
  if (!rgb) return "#fff";
  const [r, g, b] = rgb.map((v) => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
  const lum = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  return (lum + 0.05) / 0.05 > 1.05 / (lum + 0.05) ? "#111" : "#fff";
}
function errorLine(model, disposer) {
  const line = h("div", { className: "lw-error", attrs: { role: "status" } });
  const draw = () => {
    const text = String(model.get("error") ?? "");
    line.textContent = text;
    line.hidden = !text;
  };
  disposer.model(model, "change:error", draw);
  draw();
  return line;
}
function frameScheduler(fn, disposer) {
  let handle = null;
  const frames = typeof globalThis.requestAnimationFrame === "function";
  disposer.add(() => {
    if (handle === null) return;
    if (frames) cancelAnimationFrame(handle);
    else clearTimeout(handle);
    handle = null;
  });
  return () => {
    if (handle !== null) return;
    const run = () => {
      handle = null;
      fn();
    };
    handle = frames ? requestAnimationFrame(run) : (
      /** @type {any} */
      setTimeout(run, 16)
    );
  };
}
var HELD_MS = 400;
var HELD_TEXT = "Kernel busy: your changes are held and will be sent when the running cell finishes.";
function outbox(model, disposer, root = null, delay = HELD_MS) {
  const line = h("div", { className: "lw-held", attrs: { role: "status", "aria-live": "polite" } });
  line.hidden = true;
  const waiting = /* @__PURE__ */ new Map();
  let next = 0;
  let timer = null;
  let disposed = false;
  disposer.add(() => {
    disposed = true;
    if (timer !== null) clearTimeout(timer);
  });
  const update = () => {
    if (disposed) return;
    if (timer !== null) clearTimeout(timer);
    timer = null;
    const now = performance.now();
    const oldest = Math.min(...waiting.values());
    const held = waiting.size > 0 && now - oldest >= delay;
    if (held === line.hidden) {
      line.hidden = !held;
      line.textContent = held ? HELD_TEXT : "";
      root?.classList.toggle("lw-held-on", held);
    }
    if (waiting.size > 0 && !held) timer = setTimeout(update, oldest + delay - now + 1);
  };
  const send = (msg) => {
    const id = next++;
    waiting.set(id, performance.now());
    const status = (reply) => {
      const state = reply?.content?.execution_state;
      if ((state === "busy" || state === "idle") && waiting.delete(id)) update();
    };
    model.send(msg, { iopub: { status } });
    update();
  };
  return {
    send,
    line,
    get waiting() {
      return waiting.size;
    }
  };
}

// src/shared_text.js
var MIRRORED = [
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
  "padding-left"
];
var LABEL_MS = 3e3;
function movePeers(peers, delta) {
  return peers.map((p) => ({
    ...p,
    anchor: transformPosition(p.anchor, delta),
    head: transformPosition(p.head, delta)
  }));
}
function buildMirror(text, peers) {
  const clamp = (n) => Math.max(0, Math.min(n, text.length));
  const ranges = peers.map((p) => {
    const a = clamp(p.anchor);
    const b = clamp(p.head);
    return { peer: p, from: Math.min(a, b), to: Math.max(a, b), head: b };
  });
  const points = [.../* @__PURE__ */ new Set([0, text.length, ...ranges.flatMap((r) => [r.from, r.to])])].sort(
    (x, y) => x - y
  );
  const nodes = [];
  const carets = [];
  const caretsAt = (pos) => {
    for (const r of ranges) {
      if (r.head !== pos) continue;
      const color = safeColor(r.peer.color);
      const el = h("span", {
        className: `lw-caret${r.peer.active === false ? " lw-inactive" : ""}`,
        style: { "--lw-peer": color },
        attrs: { "data-client": String(r.peer.client_id) }
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
          [piece]
        )
      );
    } else {
      nodes.push(document.createTextNode(piece));
    }
  }
  caretsAt(text.length);
  nodes.push(document.createTextNode("​"));
  return { nodes, carets };
}
function undoKey(e) {
  if (!(e.ctrlKey || e.metaKey) || e.altKey) return null;
  const key = e.key.toLowerCase();
  if (key === "z") return e.shiftKey ? "redo" : "undo";
  if (key === "y" && !e.shiftKey) return "redo";
  return null;
}
function initialize(_ctx) {
}
function render({ model, el }) {
  const d = new Disposer();
  const textarea = (
    /** @type {HTMLTextAreaElement} */
    h("textarea", {
      className: "lw-text-input",
      attrs: { spellcheck: "false", "aria-label": `shared text ${model.get("path") ?? ""}` }
    })
  );
  const content = h("div", { className: "lw-text-mirror-content" });
  const overlay = h("div", { className: "lw-text-overlay", attrs: { "aria-hidden": "true" } }, [
    content
  ]);
  const labels = h("div", { className: "lw-text-labels", attrs: { "aria-hidden": "true" } });
  const wrap = h("div", { className: "lw-text-wrap" }, [textarea, overlay, labels]);
  const editing = h("div", {
    className: "lw-muted lw-editing",
    attrs: { role: "status", "aria-live": "polite" }
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
    send: (msg) => out.send(msg)
  });
  textarea.value = sync.value;
  let peers = [];
  let cursorsPending = null;
  let composing = false;
  const movedAt = /* @__PURE__ */ new Map();
  let foldTimer = null;
  d.add(() => {
    if (foldTimer !== null) clearTimeout(foldTimer);
  });
  const held = [];
  const schedule = frameScheduler(draw, d);
  function selection() {
    const { selectionStart: s, selectionEnd: e } = textarea;
    return textarea.selectionDirection === "backward" ? { anchor: e, head: s } : { anchor: s, head: e };
  }
  function onInput(event) {
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
  function showText(value, delta) {
    const { selectionStart: s, selectionEnd: e, selectionDirection: dir } = textarea;
    const { scrollTop, scrollLeft } = textarea;
    textarea.value = value;
    const move = (p) => delta ? transformPosition(p, delta) : Math.min(p, value.length);
    textarea.setSelectionRange(move(s), move(e), dir ?? "none");
    textarea.scrollTop = scrollTop;
    textarea.scrollLeft = scrollLeft;
  }
  function adoptCursors() {
    const rev = Number(model.get("cursors_rev") ?? 0);
    if (rev > sync.rev) {
      cursorsPending = rev;
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
        head: sync.toLocal(Number(c.head) || 0)
      };
      const old = before.get(peer.client_id);
      if (!old || old.anchor !== peer.anchor || old.head !== peer.head) {
        movedAt.set(peer.client_id, now);
      }
      return peer;
    });
    schedule();
  }
  function handle(msg) {
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
  function onMessage(msg) {
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
      height: `${textarea.clientHeight}px`
    });
    content.style.transform = `translate(${-textarea.scrollLeft}px, ${-textarea.scrollTop}px)`;
  }
  function draw() {
    if (composing) return;
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
        const shownFor = LABEL_MS - (now - (movedAt.get(peer.client_id) ?? -Infinity));
        const folded = shownFor <= 0;
        if (!folded) nextFold = Math.min(nextFold, shownFor);
        const label = h("div", {
          className: `lw-caret-label${peer.active === false ? " lw-inactive" : ""}`,
          text: peer.name || "anonymous",
          title: peer.name || "anonymous",
          style: { "background-color": color, color: readableOn(color) }
        });
        const r = caret.getBoundingClientRect();
        const visible = r.bottom > box.top && r.top < box.bottom && r.left <= box.right;
        label.hidden = !visible && box.height > 0;
        const above = r.top - box.top >= 14;
        label.style.left = `${Math.max(0, r.left - origin.left)}px`;
        label.style.top = above || folded ? `${r.top - origin.top}px` : `${r.bottom - origin.top}px`;
        label.classList.toggle("lw-below", !above && !folded);
        label.classList.toggle("lw-folded", folded);
        return label;
      })
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
  function onKeydown(event) {
    const action = undoKey(event);
    if (!action) return;
    event.preventDefault();
    if (composing) return;
    sync.command(action);
  }
  d.on(textarea, "keydown", onKeydown);
  d.on(textarea, "beforeinput", (event) => {
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
    onInput(void 0);
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
var shared_text_default = { initialize, render };
export {
  buildMirror,
  shared_text_default as default,
  undoKey
};
