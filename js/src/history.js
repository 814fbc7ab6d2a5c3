// History view: the room's changes, newest on top (user colour and initial, relative
// time with the ISO time as a tooltip, paths, one compact diff line per op), filters
// by path and user, "Load older", and for admins a "Revert to here" button that asks
// for a second click within 3 s. The kernel summarises; this only renders (text via
// textContent only).

import { Disposer, errorLine, h, outbox, ownKeyboard, readableOn, safeColor } from "./util.js";

/** @typedef {import("./util.js").Model} Model */

// A first click arms the revert button for this long (ms); a second one reverts.
export const CONFIRM_MS = 3000;

/** "just now", "40 s ago", "2 min ago", "3 h ago", "5 d ago"; "" when unknown. */
export function relativeTime(/** @type {number} */ ts, now = Date.now() / 1000) {
  if (!ts) return "";
  const s = Math.max(0, Math.round(now - ts));
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** @param {{model: Model}} _ctx */
function initialize(_ctx) {}

/** @param {{model: Model, el: HTMLElement}} ctx */
function render({ model, el }) {
  const d = new Disposer();
  const pathInput = /** @type {HTMLInputElement} */ (
    h("input", {
      className: "lw-history-path",
      attrs: { type: "search", placeholder: "Filter by path", "aria-label": "filter by path" },
    })
  );
  const userSelect = /** @type {HTMLSelectElement} */ (
    h("select", { className: "lw-history-user", attrs: { "aria-label": "filter by user" } })
  );
  const reload = h("button", {
    className: "lw-button lw-history-reload",
    text: "\u21bb",
    title: "Refresh",
    attrs: { type: "button", "aria-label": "refresh history" },
  });
  const busy = h("span", { className: "lw-history-loading lw-muted", text: "loading\u2026" });
  const bar = h("div", { className: "lw-history-bar" }, [pathInput, userSelect, reload, busy]);
  const list = h("ol", {
    className: "lw-history-list",
    attrs: { "aria-label": "history, newest first", "aria-live": "polite" },
  });
  const empty = h("div", { className: "lw-history-empty lw-muted", text: "No changes yet." });
  const older = h("button", {
    className: "lw-button lw-history-older",
    text: "Load older",
    attrs: { type: "button" },
  });
  const notice = h("div", { className: "lw-history-notice", attrs: { role: "status" } });
  const root = h("div", { className: "lw-widget lw-history" }, [
    bar,
    list,
    empty,
    older,
    notice,
    errorLine(model, d),
  ]);
  const out = outbox(model, d, root);
  root.append(out.line);
  el.append(root);
  d.add(() => root.remove());
  ownKeyboard(root, d);

  /** The version whose button waits for its second click (null: none). */
  let armed = /** @type {number | null} */ (null);
  /** @type {ReturnType<typeof setTimeout> | null} */
  let disarm = null;
  const clearArm = () => {
    if (disarm !== null) clearTimeout(disarm);
    disarm = null;
    armed = null;
  };
  d.add(clearArm);

  /** @param {any} e */
  const revertButton = (e) => {
    const version = Number(e.version);
    const isArmed = armed === version;
    const button = h("button", {
      className: `lw-button lw-history-revert${isArmed ? " lw-armed" : ""}`,
      text: isArmed ? "Click again to revert" : "Revert to here",
      attrs: {
        type: "button",
        "aria-label": isArmed
          ? `click again to revert to version ${version}`
          : `revert to version ${version}`,
      },
    });
    button.addEventListener("click", () => {
      if (armed === version) {
        clearArm();
        out.send({ type: "revert", version });
      } else {
        clearArm();
        armed = version;
        disarm = setTimeout(() => {
          disarm = null;
          armed = null;
          draw();
        }, CONFIRM_MS);
      }
      draw();
      /** @type {HTMLElement | null} */ (
        list.querySelector(`[data-version="${version}"] .lw-history-revert`)
      )?.focus();
    });
    return button;
  };

  /** @param {any} e @param {boolean} canRevert */
  const entry = (e, canRevert) => {
    const user = String(e.user || "");
    const color = safeColor(e.color);
    const when = Number(e.time) || 0;
    const paths = Array.isArray(e.paths) ? e.paths.map(String) : [];
    const ops = Array.isArray(e.ops) ? e.ops.map(String) : [];
    return h(
      "li",
      { className: "lw-history-entry", attrs: { "data-version": String(e.version ?? "") } },
      [
        h("span", {
          className: "lw-history-avatar",
          text: String(e.initials || "?"),
          title: user || "unknown user",
          attrs: { "aria-hidden": "true" },
          style: { "background-color": color, color: readableOn(color) },
        }),
        h("div", { className: "lw-history-main" }, [
          h("div", { className: "lw-history-meta" }, [
            h("span", { className: "lw-history-name", text: user || "unknown" }),
            h("time", {
              className: "lw-history-time lw-muted",
              text: relativeTime(when) || "time unknown",
              title: String(e.iso || ""),
              attrs: e.iso ? { datetime: String(e.iso) } : {},
            }),
            h("span", { className: "lw-history-version lw-muted", text: `v${e.version}` }),
          ]),
          h("div", { className: "lw-history-paths lw-muted", text: paths.join(", ") }),
          h(
            "ul",
            { className: "lw-history-ops" },
            ops.map((/** @type {string} */ op) =>
              h("li", { className: "lw-history-op", text: op }),
            ),
          ),
        ]),
        canRevert ? revertButton(e) : null,
      ],
    );
  };

  const draw = () => {
    const entries = model.get("entries");
    const items = Array.isArray(entries) ? entries : [];
    const canRevert = Boolean(model.get("can_revert"));
    list.replaceChildren(...items.map((e) => entry(e, canRevert)));
    empty.hidden = items.length > 0 || Boolean(model.get("loading"));
    older.hidden = !model.get("more");
  };
  const drawFilters = () => {
    const path = String(model.get("path_filter") ?? "");
    if (document.activeElement !== pathInput) pathInput.value = path;
    const users = model.get("users");
    const chosen = String(model.get("user_filter") ?? "");
    const names = Array.isArray(users) ? users.map(String) : [];
    if (chosen && !names.includes(chosen)) names.push(chosen);
    userSelect.replaceChildren(
      h("option", { text: "All users", attrs: { value: "" } }),
      ...names.map((name) => h("option", { text: name, attrs: { value: name } })),
    );
    userSelect.value = chosen;
  };
  const drawStatus = () => {
    busy.hidden = !model.get("loading");
    const text = String(model.get("notice") ?? "");
    notice.textContent = text;
    notice.hidden = !text;
  };

  /** @param {string} name @param {string} value */
  const setFilter = (name, value) => {
    if (model.get(name) === value) return;
    model.set(name, value);
    model.save_changes();
  };
  /** @type {ReturnType<typeof setTimeout> | null} */
  let typing = null;
  d.add(() => {
    if (typing !== null) clearTimeout(typing);
  });
  d.on(pathInput, "input", () => {
    if (typing !== null) clearTimeout(typing);
    typing = setTimeout(() => {
      typing = null;
      setFilter("path_filter", pathInput.value.trim());
    }, 300);
  });
  d.on(pathInput, "change", () => {
    if (typing !== null) clearTimeout(typing);
    typing = null;
    setFilter("path_filter", pathInput.value.trim());
  });
  d.on(userSelect, "change", () => setFilter("user_filter", userSelect.value));
  d.on(reload, "click", () => out.send({ type: "refresh" }));
  d.on(older, "click", () => out.send({ type: "older" }));

  // Relative times age without any change.
  const tick = setInterval(draw, 30000);
  d.add(() => clearInterval(tick));

  d.model(model, "change:entries", draw);
  d.model(model, "change:can_revert", draw);
  d.model(model, "change:more", draw);
  d.model(model, "change:loading", () => {
    drawStatus();
    draw();
  });
  d.model(model, "change:notice", drawStatus);
  d.model(model, "change:users", drawFilters);
  d.model(model, "change:user_filter", drawFilters);
  d.model(model, "change:path_filter", drawFilters);
  drawFilters();
  drawStatus();
  draw();
  return () => d.dispose();
}

export default { initialize, render };
