// Poll view: the question, one button per option with its live count and a bar.

import { Disposer, errorLine, h, outbox } from "./util.js";

/** @typedef {import("./util.js").Model} Model */

/** @param {{model: Model}} _ctx */
function initialize(_ctx) {}

/** @param {{model: Model, el: HTMLElement}} ctx */
function render({ model, el }) {
  const d = new Disposer();
  const question = h("div", { className: "lw-poll-question" });
  const list = h("div", { className: "lw-poll-options", attrs: { role: "group" } });
  const total = h("div", { className: "lw-poll-total lw-muted" });
  const root = h("div", { className: "lw-widget lw-poll" }, [
    question,
    list,
    total,
    errorLine(model, d),
  ]);
  const out = outbox(model, d, root);
  root.append(out.line);
  el.append(root);
  d.add(() => root.remove());

  const draw = () => {
    const options = /** @type {string[]} */ (model.get("options") ?? []);
    const counts = model.get("counts") ?? {};
    const sum = Number(model.get("total") ?? 0);
    const mine = model.get("my_vote");
    question.textContent = String(model.get("question") ?? "");
    list.setAttribute("aria-label", String(model.get("question") ?? "poll"));
    list.replaceChildren(
      ...options.map((option) => {
        const n = Number(counts[option] ?? 0);
        const share = sum > 0 ? (100 * n) / sum : 0;
        const button = h(
          "button",
          {
            className: `lw-poll-option${option === mine ? " lw-chosen" : ""}`,
            attrs: {
              type: "button",
              "aria-pressed": String(option === mine),
              "data-option": option,
            },
          },
          [
            h("span", { className: "lw-poll-bar", style: { width: `${share.toFixed(1)}%` } }),
            h("span", { className: "lw-poll-label", text: option }),
            h("span", { className: "lw-poll-count", text: String(n) }),
          ],
        );
        return button;
      }),
    );
    total.textContent = `${sum} vote${sum === 1 ? "" : "s"}${mine ? " \u00b7 click another option to move your vote" : ""}`;
  };
  // One delegated listener (buttons are redrawn on every change).
  d.on(list, "click", (/** @type {MouseEvent} */ event) => {
    const target = /** @type {Element | null} */ (event.target);
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

export default { initialize, render };
