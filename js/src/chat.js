// Chat view: the last messages (text via textContent only), an input, auto-scroll
// while the reader is at the bottom.

import { Disposer, errorLine, h, outbox, ownKeyboard, safeColor } from "./util.js";

/** @typedef {import("./util.js").Model} Model */

/** @param {number} ts seconds since the epoch */
function clock(ts) {
  if (!ts) return "";
  const date = new Date(ts * 1000);
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** @param {any} m @param {string} me */
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
          style: { background: safeColor(m.color) },
        }),
        h("span", { className: "lw-chat-name", text: String(m.name || m.user || "anonymous") }),
        h("span", { className: "lw-chat-time lw-muted", text: clock(Number(m.ts) || 0) }),
      ]),
      h("div", { className: "lw-chat-text", text: String(m.text ?? "") }),
    ],
  );
}

/** @param {{model: Model}} _ctx */
function initialize(_ctx) {}

/** @param {{model: Model, el: HTMLElement}} ctx */
function render({ model, el }) {
  const d = new Disposer();
  const list = h("ul", { className: "lw-chat-list", attrs: { "aria-live": "polite" } });
  const input = /** @type {HTMLInputElement} */ (
    h("input", {
      className: "lw-chat-input",
      attrs: { type: "text", placeholder: "Message", "aria-label": "message" },
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
    input.maxLength = Number(model.get("max_length") ?? 4000);
  };
  d.on(form, "submit", (/** @type {Event} */ event) => {
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

export default { initialize, render };
