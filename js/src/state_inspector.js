// StateInspector view: a live, collapsible tree of a JSON value. Branches render
// their children only when opened; which ones are open survives updates.

import { Disposer, h } from "./util.js";

/** @typedef {import("./util.js").Model} Model */

/** @param {unknown} value */
function kind(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

/** @param {unknown} value */
function scalar(value) {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

/**
 * @param {string} key @param {unknown} value @param {string} path
 * @param {Set<string>} open the paths of open branches (updated on toggle)
 * @returns {HTMLElement}
 */
export function node(key, value, path, open) {
  const type = kind(value);
  const keyEl = h("span", { className: "lw-tree-key", text: key });
  if (type !== "object" && type !== "array") {
    return h("div", { className: "lw-tree-leaf", attrs: { "data-path": path } }, [
      keyEl,
      h("span", { className: `lw-tree-value lw-tree-${type}`, text: scalar(value) }),
    ]);
  }
  const entries = Object.entries(/** @type {object} */ (value));
  const summary = h("summary", {}, [
    keyEl,
    h("span", {
      className: "lw-tree-meta lw-muted",
      text: type === "array" ? `[${entries.length}]` : `{${entries.length}}`,
    }),
  ]);
  const details = /** @type {HTMLDetailsElement} */ (
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

/** @param {{model: Model}} _ctx */
function initialize(_ctx) {}

/** @param {{model: Model, el: HTMLElement}} ctx */
function render({ model, el }) {
  const d = new Disposer();
  const title = h("span", { className: "lw-inspector-path" });
  const version = h("span", { className: "lw-muted" });
  const tree = h("div", { className: "lw-tree", attrs: { role: "tree" } });
  const root = h("div", { className: "lw-widget lw-inspector" }, [
    h("div", { className: "lw-inspector-head" }, [title, version]),
    tree,
  ]);
  el.append(root);
  d.add(() => root.remove());
  const open = new Set([""]);

  const draw = () => {
    const path = String(model.get("path") ?? "");
    title.textContent = path || "/";
    version.textContent = `v${model.get("version") ?? 0}`;
    const data = model.get("data");
    tree.replaceChildren(
      data === undefined || data === null
        ? h("div", { className: "lw-muted", text: "(nothing here)" })
        : node(path || "/", data, "", open),
    );
  };
  d.model(model, "change:data", draw);
  d.model(model, "change:version", draw);
  d.model(model, "change:path", draw);
  draw();
  return () => d.dispose();
}

export default { initialize, render };
