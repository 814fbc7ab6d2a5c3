// Small DOM helpers shared by the livewidgets views.
// Rule: anything a user typed (names, messages, keys, values) goes in with
// textContent (or a Text node), never innerHTML.

/**
 * @typedef {object} Model  the anywidget model API the views use
 * @property {(name: string) => any} get
 * @property {(name: string, value: any) => void} set
 * @property {() => void} save_changes
 * @property {(event: string, cb: (...args: any[]) => void) => void} on
 * @property {(event: string, cb?: (...args: any[]) => void) => void} off
 * @property {(content: any, callbacks?: any, buffers?: any[]) => void} send
 */

/**
 * Create an element.
 * @param {string} tag
 * @param {{className?: string, text?: string, title?: string, attrs?: Record<string, string>,
 *   style?: Record<string, string>}} [props]
 * @param {(Node | string | null | undefined | false)[]} [children]
 * @returns {HTMLElement}
 */
export function h(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  if (props.className) node.className = props.className;
  if (props.text !== undefined) node.textContent = props.text;
  if (props.title !== undefined) node.title = props.title;
  for (const [key, value] of Object.entries(props.attrs ?? {})) node.setAttribute(key, value);
  for (const [key, value] of Object.entries(props.style ?? {})) node.style.setProperty(key, value);
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

/** Collects cleanups: every listener added through it is removed by dispose(). */
export class Disposer {
  constructor() {
    /** @type {(() => void)[]} */
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
}

let counter = 0;
/** A process-unique id for a view. */
/**
 * Keep keys typed into a widget away from JupyterLab's shortcuts (Enter, Shift+Enter,
 * A/B/D…), the way ipywidgets' text boxes do: Lumino skips elements marked with
 * data-lm-suppress-shortcuts, and the keydown stops at our root.
 * @param {HTMLElement} root
 * @param {Disposer} disposer
 */
export function ownKeyboard(root, disposer) {
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  disposer.on(root, "keydown", (/** @type {Event} */ event) => event.stopPropagation());
}

export function uid() {
  counter += 1;
  const random = Math.random().toString(36).slice(2, 10);
  return `v${Date.now().toString(36)}${counter}${random}`;
}

const COLOR = /^(#[0-9a-f]{3,8}|(rgba?|hsla?)\([0-9.,%\s/a-z+-]*\)|[a-z]{3,30})$/i;
const FALLBACK = "var(--jp-brand-color1, #1976d2)";

/** `color` if it is a plain CSS colour (hex, rgb(), hsl(), a name), else the theme colour. */
export function safeColor(/** @type {unknown} */ color) {
  return typeof color === "string" && COLOR.test(color.trim()) ? color.trim() : FALLBACK;
}

/** @param {string} color @returns {[number, number, number] | null} sRGB 0..1 */
function parseColor(color) {
  const c = color.trim().toLowerCase();
  let m = /^#([0-9a-f]{3}|[0-9a-f]{6})([0-9a-f]{2})?$/.exec(c);
  if (m) {
    const hex = m[1].length === 3 ? [...m[1]].map((x) => x + x).join("") : m[1];
    const byte = (/** @type {number} */ i) => parseInt(hex.slice(i, i + 2), 16) / 255;
    return [byte(0), byte(2), byte(4)];
  }
  m = /^rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)/.exec(c);
  if (m) {
    const channel = (/** @type {string} */ x) => Math.min(255, Number(x)) / 255;
    return [channel(m[1]), channel(m[2]), channel(m[3])];
  }
  m = /^hsla?\(\s*([\d.]+)(?:deg)?[\s,]+([\d.]+)%[\s,]+([\d.]+)%/.exec(c);
  if (m) {
    const hue = Number(m[1]) % 360;
    const s = Number(m[2]) / 100;
    const l = Number(m[3]) / 100;
    const k = (/** @type {number} */ n) => (n + hue / 30) % 12;
    const a = s * Math.min(l, 1 - l);
    const f = (/** @type {number} */ n) =>
      l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
    return [f(0), f(8), f(4)];
  }
  return null;
}

/** Black or white, whichever reads better on `color` (WCAG relative luminance). */
export function readableOn(/** @type {string} */ color) {
  const rgb = parseColor(color);
  if (!rgb) return "#fff";
  const [r, g, b] = rgb.map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
  const lum = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  return (lum + 0.05) / 0.05 > 1.05 / (lum + 0.05) ? "#111" : "#fff";
}

/** Up to two initials, punctuation skipped (the kernel sends them; this is the fallback). */
export function initialsOf(/** @type {string} */ name) {
  const firsts = String(name || "")
    .replace(/[_.]/g, " ")
    .split(/\s+/)
    .map((w) => /[\p{L}\p{N}]\p{M}*/u.exec(w)?.[0])
    .filter((x) => x !== undefined);
  const letters = firsts.length > 1 ? firsts.slice(0, 2) : firsts.slice(0, 1);
  return letters.join("").toUpperCase() || "?";
}

/**
 * A line under a widget showing the model's `error` trait (empty = hidden).
 * @param {Model} model @param {Disposer} disposer
 */
export function errorLine(model, disposer) {
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

/** Schedule `fn` for the next frame, at most once until it ran. */
export function frameScheduler(/** @type {() => void} */ fn, /** @type {Disposer} */ disposer) {
  /** @type {number | null} */
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
    handle = frames ? requestAnimationFrame(run) : /** @type {any} */ (setTimeout(run, 16));
  };
}

// How long a message may wait for the kernel before the view says it is held (ms).
export const HELD_MS = 400;
export const HELD_TEXT =
  "Kernel busy: your changes are held and will be sent when the running cell finishes.";

/**
 * Messages to the kernel, and a status line that says when they wait for a busy kernel.
 *
 * A message waits until the kernel starts handling it: its `status` message on IOPub
 * (`busy`, then `idle`, with the message as parent), the signal ipywidgets' own
 * front end uses to pace updates. With kernel subshells (JupyterLab ≥ 4.4 / Notebook
 * ≥ 7.4 with ipykernel ≥ 7) that takes milliseconds even while a cell runs; without
 * them the kernel handles it only when the cell ends. A message waiting longer than
 * `delay` ms shows the line (role=status, so screen readers announce it) and marks
 * `root` with `lw-held`; both go when every message has been handled. Nothing is
 * dropped: the kernel keeps the messages in order and handles them after the cell.
 * @param {Model} model @param {Disposer} disposer @param {HTMLElement | null} [root]
 * @param {number} [delay]
 */
export function outbox(model, disposer, root = null, delay = HELD_MS) {
  const line = h("div", { className: "lw-held", attrs: { role: "status", "aria-live": "polite" } });
  line.hidden = true;
  /** @type {Map<number, number>} message number -> performance.now() when sent */
  const waiting = new Map();
  let next = 0;
  /** @type {ReturnType<typeof setTimeout> | null} */
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

  /** @param {any} msg */
  const send = (msg) => {
    const id = next++;
    waiting.set(id, performance.now());
    const status = (/** @type {any} */ reply) => {
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
    },
  };
}
