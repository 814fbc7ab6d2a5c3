/* livewidgets build: sources sha256:bf29bf092cb249e7bd28750350ee0ad169e687995ca853aa89c2e82613b66f13 (esbuild 0.28.2) */

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
function ownKeyboard(root, disposer) {
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  disposer.on(root, "keydown", (event) => event.stopPropagation());
}
var COLOR = /^(#[0-9a-f]{3,8}|(rgba?|hsla?)\([0-9.,%\s/a-z+-]*\)|[a-z]{3,30})$/i;
var FALLBACK = "var(--jp-brand-color1, #1976d2)";
function safeColor(color) {
  return typeof color === "string" && COLOR.test(color.trim()) ? color.trim() : FALLBACK;
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

// src/chat.js
function clock(ts) {
  if (!ts) return "";
  const date = new Date(ts * 1e3);
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
function item(m, me) {
  const mine = m.user === me;
  return h(
    "li",
    { className: `lw-chat-msg${mine ? " lw-mine" : ""}`, attrs: { "data-id": String(m.id ?? "") } },
    [
      h("div", { className: "lw-chat-meta" }, [
        // The user's colour marks a dot; the name stays in the theme's text colour,
        // which is readable on light and dark backgrounds alike.
        h("span", {
          className: "lw-chat-dot",
          attrs: { "aria-hidden": "true" },
          style: { background: safeColor(m.color) }
        }),
        h("span", { className: "lw-chat-name", text: String(m.name || m.user || "anonymous") }),
        h("span", { className: "lw-chat-time lw-muted", text: clock(Number(m.ts) || 0) })
      ]),
      h("div", { className: "lw-chat-text", text: String(m.text ?? "") })
    ]
  );
}
function initialize(_ctx) {
}
function render({ model, el }) {
  const d = new Disposer();
  const list = h("ul", { className: "lw-chat-list", attrs: { "aria-live": "polite" } });
  const input = (
    /** @type {HTMLInputElement} */
    h("input", {
      className: "lw-chat-input",
      attrs: { type: "text", placeholder: "Message", "aria-label": "message" }
    })
  );
  const send = h("button", { className: "lw-button", text: "Send", attrs: { type: "submit" } });
  const form = h("form", { className: "lw-chat-form" }, [input, send]);
  const root = h("div", { className: "lw-widget lw-chat" }, [list, form, errorLine(model, d)]);
  const out = outbox(model, d, root);
  root.append(out.line);
  el.append(root);
  d.add(() => root.remove());
  ownKeyboard(root, d);
  let first = true;
  const draw = () => {
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const messages = model.get("messages");
    const me = String(model.get("me") ?? "");
    list.replaceChildren(...(Array.isArray(messages) ? messages : []).map((m) => item(m, me)));
    if (first || atBottom) list.scrollTop = list.scrollHeight;
    first = false;
  };
  const limit = () => {
    input.maxLength = Number(model.get("max_length") ?? 4e3);
  };
  d.on(form, "submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    out.send({ type: "send", text });
    input.value = "";
  });
  d.model(model, "change:messages", draw);
  d.model(model, "change:me", draw);
  d.model(model, "change:max_length", limit);
  limit();
  draw();
  return () => d.dispose();
}
var chat_default = { initialize, render };
export {
  chat_default as default
};
