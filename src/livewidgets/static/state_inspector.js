/* livewidgets build: sources sha256:bf29bf092cb249e7bd28750350ee0ad169e687995ca853aa89c2e82613b66f13 (esbuild 0.28.2) */

// src/util.js
function h(tag, props = {}, children = []) {
  const node2 = document.createElement(tag);
  if (props.className) node2.className = props.className;
  if (props.text !== void 0) node2.textContent = props.text;
  if (props.title !== void 0) node2.title = props.title;
  for (const [key, value] of Object.entries(props.attrs ?? {})) node2.setAttribute(key, value);
  for (const [key, value] of Object.entries(props.style ?? {})) node2.style.setProperty(key, value);
  for (const child of children) {
    if (child === null || child === void 0 || child === false) continue;
    node2.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node2;
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

// src/state_inspector.js
function kind(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}
function scalar(value) {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}
function node(key, value, path, open) {
  const type = kind(value);
  const keyEl = h("span", { className: "lw-tree-key", text: key });
  if (type !== "object" && type !== "array") {
    return h("div", { className: "lw-tree-leaf", attrs: { "data-path": path } }, [
      keyEl,
      h("span", { className: `lw-tree-value lw-tree-${type}`, text: scalar(value) })
    ]);
  }
  const entries = Object.entries(
    /** @type {object} */
    value
  );
  const summary = h("summary", {}, [
    keyEl,
    h("span", {
      className: "lw-tree-meta lw-muted",
      text: type === "array" ? `[${entries.length}]` : `{${entries.length}}`
    })
  ]);
  const details = (
    /** @type {HTMLDetailsElement} */
    h("details", { className: "lw-tree-branch", attrs: { "data-path": path } }, [summary])
  );
  const children = h("div", { className: "lw-tree-children" });
  details.append(children);
  const fill = () => {
    if (children.childElementCount || !details.open) return;
    if (entries.length === 0) children.append(h("div", { className: "lw-muted", text: "(empty)" }));
    for (const [k, v] of entries) children.append(node(k, v, path ? `${path}/${k}` : k, open));
  };
  details.open = open.has(path);
  fill();
  details.addEventListener("toggle", () => {
    if (details.open) open.add(path);
    else open.delete(path);
    fill();
  });
  return details;
}
function initialize(_ctx) {
}
function render({ model, el }) {
  const d = new Disposer();
  const title = h("span", { className: "lw-inspector-path" });
  const version = h("span", { className: "lw-muted" });
  const tree = h("div", { className: "lw-tree", attrs: { role: "tree" } });
  const root = h("div", { className: "lw-widget lw-inspector" }, [
    h("div", { className: "lw-inspector-head" }, [title, version]),
    tree
  ]);
  el.append(root);
  d.add(() => root.remove());
  const open = /* @__PURE__ */ new Set([""]);
  const draw = () => {
    const path = String(model.get("path") ?? "");
    title.textContent = path || "/";
    version.textContent = `v${model.get("version") ?? 0}`;
    const data = model.get("data");
    tree.replaceChildren(
      data === void 0 || data === null ? h("div", { className: "lw-muted", text: "(nothing here)" }) : node(path || "/", data, "", open)
    );
  };
  d.model(model, "change:data", draw);
  d.model(model, "change:version", draw);
  d.model(model, "change:path", draw);
  draw();
  return () => d.dispose();
}
var state_inspector_default = { initialize, render };
export {
  state_inspector_default as default,
  node
};
