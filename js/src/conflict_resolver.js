// ConflictResolver view: hidden until a conflict arrives; then "mine" and "theirs"
// side by side with "keep mine" / "keep theirs".

import { Disposer, errorLine, h, outbox } from "./util.js";

/** @typedef {import("./util.js").Model} Model */

/** @param {unknown} value */
function pretty(value) {
  return value === undefined ? "" : JSON.stringify(value, null, 2);
}

/** @param {{model: Model}} _ctx */
function initialize(_ctx) {}

/** @param {{model: Model, el: HTMLElement}} ctx */
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
    attrs: { type: "button" },
  });
  const keepTheirs = h("button", {
    className: "lw-button",
    text: "Keep theirs",
    attrs: { type: "button" },
  });
  const root = h("div", { className: "lw-widget lw-conflict", attrs: { role: "alert" } }, [
    title,
    message,
    h("div", { className: "lw-conflict-sides" }, [
      h("div", { className: "lw-conflict-side" }, [
        h("div", { className: "lw-conflict-side-title", text: "Mine" }),
        mine,
      ]),
      h("div", { className: "lw-conflict-side" }, [theirsTitle, theirs]),
    ]),
    h("div", { className: "lw-conflict-actions" }, [keepMine, keepTheirs]),
    errorLine(model, d),
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
    "their_version",
  ]) {
    d.model(model, `change:${name}`, draw);
  }
  draw();
  return () => d.dispose();
}

export default { initialize, render };
