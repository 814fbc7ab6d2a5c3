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

// src/conflict_resolver.js
function pretty(value) {
  return value === void 0 ? "" : JSON.stringify(value, null, 2);
}
function initialize(_ctx) {
}
function render({ model, el }) {
  const d = new Disposer();
  const title = h("div", { className: "lw-conflict-title" });
  const message = h("div", { className: "lw-muted lw-conflict-message" });
  const mine = h("pre", { className: "lw-conflict-value" });
  const theirs = h("pre", { className: "lw-conflict-value" });
  const theirsTitle = h("div", { className: "lw-conflict-side-title" });
  const keepMine = h("button", {
    className: "lw-button lw-primary",
    text: "Keep mine",
    attrs: { type: "button" }
  });
  const keepTheirs = h("button", {
    className: "lw-button",
    text: "Keep theirs",
    attrs: { type: "button" }
  });
  const root = h("div", { className: "lw-widget lw-conflict", attrs: { role: "alert" } }, [
    title,
    message,
    h("div", { className: "lw-conflict-sides" }, [
      h("div", { className: "lw-conflict-side" }, [
        h("div", { className: "lw-conflict-side-title", text: "Mine" }),
        mine
      ]),
      h("div", { className: "lw-conflict-side" }, [theirsTitle, theirs])
    ]),
    h("div", { className: "lw-conflict-actions" }, [keepMine, keepTheirs]),
    errorLine(model, d)
  ]);
  const out = outbox(model, d, root);
  root.append(out.line);
  el.append(root);
  d.add(() => root.remove());
  const draw = () => {
    root.hidden = !model.get("active");
    title.textContent = `Conflict at ${model.get("conflict_path") || model.get("path") || ""}`;
    message.textContent = String(model.get("message") ?? "");
    mine.textContent = model.get("mine_exists") === false ? "(deleted)" : pretty(model.get("mine"));
    theirs.textContent = pretty(model.get("theirs"));
    theirsTitle.textContent = `Theirs (v${model.get("their_version") ?? 0})`;
  };
  d.on(keepMine, "click", () => out.send({ type: "keep_mine" }));
  d.on(keepTheirs, "click", () => out.send({ type: "keep_theirs" }));
  for (const name of [
    "active",
    "conflict_path",
    "message",
    "mine",
    "mine_exists",
    "theirs",
    "their_version"
  ]) {
    d.model(model, `change:${name}`, draw);
  }
  draw();
  return () => d.dispose();
}
var conflict_resolver_default = { initialize, render };
export {
  conflict_resolver_default as default
};
