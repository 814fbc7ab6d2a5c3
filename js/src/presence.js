// Presence view: a row of avatars (initials on the user's colour), the name on
// hover, dimmed when idle or offline, with a small label of the cell/path.

import { Disposer, errorLine, h, initialsOf, readableOn, safeColor } from "./util.js";

/** @typedef {import("./util.js").Model} Model */

/** @param {any} peer */
function avatar(peer) {
  const name = String(peer.name || peer.user || "anonymous");
  const color = safeColor(peer.color);
  const status = String(peer.status || "active");
  const label = String(peer.label || "");
  const you = peer.is_self ? " (you)" : "";
  const activity = String(peer.activity || "");
  const kernel = activity ? `, ${activity}` : peer.kernel ? `, kernel ${peer.kernel}` : "";
  return h(
    "div",
    {
      className: `lw-avatar lw-status-${status.replace(/[^a-z]/g, "")}${peer.is_self ? " lw-self" : ""}`,
      title: `${name}${you}: ${status}${kernel}${label ? ` \u00b7 ${label}` : ""}`,
      attrs: { role: "listitem", "data-client": String(peer.client_id ?? "") },
    },
    [
      h("span", {
        className: "lw-avatar-circle",
        text: String(peer.initials || initialsOf(name)),
        style: { "background-color": color, color: readableOn(color) },
      }),
      label ? h("span", { className: "lw-avatar-label", text: label }) : null,
      peer.kernel === "busy"
        ? h("span", { className: "lw-avatar-busy", title: activity || "kernel busy" })
        : null,
      peer.kernel === "busy" && activity
        ? h("span", { className: "lw-avatar-activity lw-muted", text: activity })
        : null,
    ],
  );
}

/** @param {{model: Model}} _ctx */
function initialize(_ctx) {}

/** @param {{model: Model, el: HTMLElement}} ctx */
function render({ model, el }) {
  const d = new Disposer();
  const bar = h("div", {
    className: "lw-presence-bar",
    attrs: { role: "list", "aria-label": "people here" },
  });
  const root = h("div", { className: "lw-widget lw-presence" }, [bar, errorLine(model, d)]);
  el.append(root);
  d.add(() => root.remove());

  const draw = () => {
    const peers = model.get("peers");
    const list = Array.isArray(peers) ? peers : [];
    bar.replaceChildren(...list.map(avatar));
    const me = list.find((p) => p.is_self);
    if (!list.some((p) => !p.is_self)) {
      // Offline we cannot know who else is here: say that, not "nobody".
      const text = me && me.status === "offline" ? "offline" : "nobody else here yet";
      bar.append(h("span", { className: "lw-muted lw-presence-note", text }));
    }
  };
  d.model(model, "change:peers", draw);
  draw();
  return () => d.dispose();
}

export default { initialize, render };
