// AnswerBox view: a private answer (textarea + submit); an admin also sees everyone's.
// Answers are user text: textContent only.

import { Disposer, errorLine, h, outbox, ownKeyboard } from "./util.js";

/** @typedef {import("./util.js").Model} Model */

/** @param {{model: Model}} _ctx */
function initialize(_ctx) {}

/** @param {{model: Model, el: HTMLElement}} ctx */
function render({ model, el }) {
  const d = new Disposer();
  const prompt = h("div", { className: "lw-answer-prompt" });
  const input = /** @type {HTMLTextAreaElement} */ (
    h("textarea", {
      className: "lw-answer-input",
      attrs: { rows: "3", placeholder: "Your answer", "aria-label": "your answer" },
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
    errorLine(model, d),
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
      ...users.map((user) =>
        h("li", { className: "lw-answer-item" }, [
          h("span", { className: "lw-answer-user", text: user }),
          h("span", { className: "lw-answer-text", text: String(answers[user] ?? "") }),
        ]),
      ),
    );
  };
  const limit = () => {
    input.maxLength = Number(model.get("max_length") ?? 10000);
  };
  d.on(form, "submit", (/** @type {Event} */ event) => {
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

export default { initialize, render };
