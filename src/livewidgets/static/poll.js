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

// src/poll.js
function initialize(_ctx) {
}
function render({ model, el }) {
  const d = new Disposer();
  const question = h("div", { className: "lw-poll-question" });
  const list = h("div", { className: "lw-poll-options", attrs: { role: "group" } });
  const total = h("div", { className: "lw-poll-total lw-muted" });
  const root = h("div", { className: "lw-widget lw-poll" }, [
    question,
    list,
    total,
    errorLine(model, d)
  ]);
  const out = outbox(model, d, root);
  root.append(out.line);
  el.append(root);
  d.add(() => root.remove());
  const draw = () => {
    const options = (
      /** @type {string[]} */
      model.get("options") ?? []
    );
    const counts = model.get("counts") ?? {};
    const sum = Number(model.get("total") ?? 0);
    const mine = model.get("my_vote");
    question.textContent = String(model.get("question") ?? "");
    list.setAttribute("aria-label", String(model.get("question") ?? "poll"));
    list.replaceChildren(
      ...options.map((option) => {
        const n = Number(counts[option] ?? 0);
        const share = sum > 0 ? 100 * n / sum : 0;
        const button = h(
          "button",
          {
            className: `lw-poll-option${option === mine ? " lw-chosen" : ""}`,
            attrs: {
              type: "button",
              "aria-pressed": String(option === mine),
              "data-option": option
            }
          },
          [
            h("span", { className: "lw-poll-bar", style: { width: `${share.toFixed(1)}%` } }),
            h("span", { className: "lw-poll-label", text: option }),
            h("span", { className: "lw-poll-count", text: String(n) })
          ]
        );
        return button;
      })
    );
    total.textContent = `${sum} vote${sum === 1 ? "" : "s"}${mine ? " · click another option to move your vote" : ""}`;
  };
  d.on(list, "click", (event) => {
    const target = (
      /** @type {Element | null} */
      event.target
    );
    const button = target?.closest?.("button[data-option]");
    if (button && list.contains(button))
      out.send({ type: "vote", option: button.getAttribute("data-option") });
  });
  for (const name of ["options", "counts", "total", "my_vote", "question"]) {
    d.model(model, `change:${name}`, draw);
  }
  draw();
  return () => d.dispose();
}
var poll_default = { initialize, render };
export {
  poll_default as default
};
