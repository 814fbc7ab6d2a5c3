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

// src/answer_box.js
function initialize(_ctx) {
}
function render({ model, el }) {
  const d = new Disposer();
  const prompt = h("div", { className: "lw-answer-prompt" });
  const input = (
    /** @type {HTMLTextAreaElement} */
    h("textarea", {
      className: "lw-answer-input",
      attrs: { rows: "3", placeholder: "Your answer", "aria-label": "your answer" }
    })
  );
  const submit = h("button", { className: "lw-button", text: "Submit", attrs: { type: "submit" } });
  const state = h("span", { className: "lw-muted lw-answer-state", attrs: { role: "status" } });
  const form = h("form", { className: "lw-answer-form" }, [input, submit, state]);
  const all = h("ul", { className: "lw-answer-list", attrs: { "aria-label": "all answers" } });
  const root = h("div", { className: "lw-widget lw-answer" }, [
    prompt,
    form,
    all,
    errorLine(model, d)
  ]);
  const out = outbox(model, d, root);
  root.append(out.line);
  el.append(root);
  d.add(() => root.remove());
  ownKeyboard(root, d);
  const draw = () => {
    prompt.textContent = String(model.get("prompt") ?? "");
    const mine = model.get("my_answer");
    const sent = typeof mine === "string" && mine !== "";
    state.textContent = sent ? "Submitted: only you and the teacher can see it." : "";
    if (sent && document.activeElement !== input && input.value === "") input.value = mine;
    const answers = model.get("answers") ?? {};
    const users = Object.keys(answers).sort();
    all.hidden = !model.get("sees_all");
    all.replaceChildren(
      ...users.map(
        (user) => h("li", { className: "lw-answer-item" }, [
          h("span", { className: "lw-answer-user", text: user }),
          h("span", { className: "lw-answer-text", text: String(answers[user] ?? "") })
        ])
      )
    );
  };
  const limit = () => {
    input.maxLength = Number(model.get("max_length") ?? 1e4);
  };
  d.on(form, "submit", (event) => {
    event.preventDefault();
    out.send({ type: "submit", text: input.value });
  });
  for (const name of ["prompt", "my_answer", "answers", "sees_all"]) {
    d.model(model, `change:${name}`, draw);
  }
  d.model(model, "change:max_length", limit);
  limit();
  draw();
  return () => d.dispose();
}
var answer_box_default = { initialize, render };
export {
  answer_box_default as default
};
