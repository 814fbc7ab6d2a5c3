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

// src/connection_status.js
var LABELS = (
  /** @type {Record<string, string>} */
  {
    connected: "connected",
    connecting: "connecting…",
    reconnecting: "reconnecting",
    disconnected: "disconnected",
    closed: "closed"
  }
);
function initialize(_ctx) {
}
function render({ model, el }) {
  const d = new Disposer();
  const dot = h("span", { className: "lw-conn-dot" });
  const state = h("span", { className: "lw-conn-state" });
  const detail = h("span", { className: "lw-conn-detail" });
  const badge = h(
    "div",
    { className: "lw-conn", attrs: { role: "status", "aria-live": "polite" } },
    [dot, state, detail]
  );
  const root = h("div", { className: "lw-widget lw-connection" }, [badge, errorLine(model, d)]);
  el.append(root);
  d.add(() => root.remove());
  let retryAt = 0;
  let ticking = null;
  const stopTicking = () => {
    if (ticking !== null) clearInterval(ticking);
    ticking = null;
  };
  d.add(stopTicking);
  const draw = () => {
    const s = String(model.get("state") ?? "disconnected");
    const attempt = Number(model.get("attempt") ?? 0);
    badge.className = `lw-conn lw-conn-${s.replace(/[^a-z]/g, "")}${model.get("gave_up") ? " lw-conn-gaveup" : ""}`;
    state.textContent = (LABELS[s] ?? s) + (s === "reconnecting" && attempt ? ` (attempt ${attempt})` : "");
    const parts = [];
    const remaining = Math.max(0, (retryAt - performance.now()) / 1e3);
    if (s === "reconnecting" && remaining > 0) parts.push(`next try in ${remaining.toFixed(1)} s`);
    const rtt = model.get("rtt_ms");
    if (s === "connected" && typeof rtt === "number") parts.push(`${Math.round(rtt)} ms`);
    const queue = Number(model.get("queue_depth") ?? 0);
    if (queue > 0 || s !== "connected") parts.push(`queue ${queue}`);
    const held = Number(model.get("held") ?? 0);
    if (held > 0) parts.push(`${held} change${held === 1 ? "" : "s"} held until the cell finishes`);
    detail.textContent = parts.join(" · ");
    badge.classList.toggle("lw-conn-held", held > 0);
    const error = String(model.get("last_error") ?? "");
    badge.title = error ? `last error: ${error}` : `room version ${model.get("version") ?? 0}`;
    if (remaining <= 0 || s !== "reconnecting") stopTicking();
  };
  const onRetry = () => {
    const delay = Number(model.get("retry_delay") ?? 0);
    retryAt = performance.now() + delay * 1e3;
    stopTicking();
    if (delay > 0) ticking = setInterval(draw, 100);
    draw();
  };
  for (const name of [
    "state",
    "attempt",
    "rtt_ms",
    "queue_depth",
    "version",
    "last_error",
    "gave_up",
    "held"
  ]) {
    d.model(model, `change:${name}`, draw);
  }
  d.model(model, "change:retry_id", onRetry);
  d.model(model, "change:retry_delay", onRetry);
  if (Number(model.get("retry_delay") ?? 0) > 0) onRetry();
  draw();
  return () => d.dispose();
}
var connection_status_default = { initialize, render };
export {
  connection_status_default as default
};
