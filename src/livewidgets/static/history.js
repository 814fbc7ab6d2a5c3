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
var COLOR = /^(#[0-9a-f]{3,8}|(rgba?|hsla?)\([0-9.,%\s/a-z+-]*\)|[a-z]{3,30})$/i;
var FALLBACK = "var(--jp-brand-color1, #1976d2)";
function safeColor(color) {
  return typeof color === "string" && COLOR.test(color.trim()) ? color.trim() : FALLBACK;
}
function parseColor(color) {
  const c = color.trim().toLowerCase();
  let m = /^#([0-9a-f]{3}|[0-9a-f]{6})([0-9a-f]{2})?$/.exec(c);
  if (m) {
    const hex = m[1].length === 3 ? [...m[1]].map((x) => x + x).join("") : m[1];
    const byte = (i) => parseInt(hex.slice(i, i + 2), 16) / 255;
    return [byte(0), byte(2), byte(4)];
  }
  m = /^rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)/.exec(c);
  if (m) {
    const channel = (x) => Math.min(255, Number(x)) / 255;
    return [channel(m[1]), channel(m[2]), channel(m[3])];
  }
  m = /^hsla?\(\s*([\d.]+)(?:deg)?[\s,]+([\d.]+)%[\s,]+([\d.]+)%/.exec(c);
  if (m) {
    const hue = Number(m[1]) % 360;
    const s = Number(m[2]) / 100;
    const l = Number(m[3]) / 100;
    const k = (n) => (n + hue / 30) % 12;
    const a = s * Math.min(l, 1 - l);
    const f = (n) => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
    return [f(0), f(8), f(4)];
  }
  return null;
}
function readableOn(color) {
  const rgb = parseColor(color);
  if (!rgb) return "#fff";
  const [r, g, b] = rgb.map((v) => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
  const lum = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  return (lum + 0.05) / 0.05 > 1.05 / (lum + 0.05) ? "#111" : "#fff";
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

// src/history.js
var CONFIRM_MS = 3e3;
function relativeTime(ts, now = Date.now() / 1e3) {
  if (!ts) return "";
  const s = Math.max(0, Math.round(now - ts));
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}
function initialize(_ctx) {
}
function render({ model, el }) {
  const d = new Disposer();
  const pathInput = (
    /** @type {HTMLInputElement} */
    h("input", {
      className: "lw-history-path",
      attrs: { type: "search", placeholder: "Filter by path", "aria-label": "filter by path" }
    })
  );
  const userSelect = (
    /** @type {HTMLSelectElement} */
    h("select", { className: "lw-history-user", attrs: { "aria-label": "filter by user" } })
  );
  const reload = h("button", {
    className: "lw-button lw-history-reload",
    text: "↻",
    title: "Refresh",
    attrs: { type: "button", "aria-label": "refresh history" }
  });
  const busy = h("span", { className: "lw-history-loading lw-muted", text: "loading…" });
  const bar = h("div", { className: "lw-history-bar" }, [pathInput, userSelect, reload, busy]);
  const list = h("ol", {
    className: "lw-history-list",
    attrs: { "aria-label": "history, newest first", "aria-live": "polite" }
  });
  const empty = h("div", { className: "lw-history-empty lw-muted", text: "No changes yet." });
  const older = h("button", {
    className: "lw-button lw-history-older",
    text: "Load older",
    attrs: { type: "button" }
  });
  const notice = h("div", { className: "lw-history-notice", attrs: { role: "status" } });
  const root = h("div", { className: "lw-widget lw-history" }, [
    bar,
    list,
    empty,
    older,
    notice,
    errorLine(model, d)
  ]);
  const out = outbox(model, d, root);
  root.append(out.line);
  el.append(root);
  d.add(() => root.remove());
  ownKeyboard(root, d);
  let armed = (
    /** @type {number | null} */
    null
  );
  let disarm = null;
  const clearArm = () => {
    if (disarm !== null) clearTimeout(disarm);
    disarm = null;
    armed = null;
  };
  d.add(clearArm);
  const revertButton = (e) => {
    const version = Number(e.version);
    const isArmed = armed === version;
    const button = h("button", {
      className: `lw-button lw-history-revert${isArmed ? " lw-armed" : ""}`,
      text: isArmed ? "Click again to revert" : "Revert to here",
      attrs: {
        type: "button",
        "aria-label": isArmed ? `click again to revert to version ${version}` : `revert to version ${version}`
      }
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
      list.querySelector(`[data-version="${version}"] .lw-history-revert`)?.focus();
    });
    return button;
  };
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
          style: { "background-color": color, color: readableOn(color) }
        }),
        h("div", { className: "lw-history-main" }, [
          h("div", { className: "lw-history-meta" }, [
            h("span", { className: "lw-history-name", text: user || "unknown" }),
            h("time", {
              className: "lw-history-time lw-muted",
              text: relativeTime(when) || "time unknown",
              title: String(e.iso || ""),
              attrs: e.iso ? { datetime: String(e.iso) } : {}
            }),
            h("span", { className: "lw-history-version lw-muted", text: `v${e.version}` })
          ]),
          h("div", { className: "lw-history-paths lw-muted", text: paths.join(", ") }),
          h(
            "ul",
            { className: "lw-history-ops" },
            ops.map(
              (op) => h("li", { className: "lw-history-op", text: op })
            )
          )
        ]),
        canRevert ? revertButton(e) : null
      ]
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
      ...names.map((name) => h("option", { text: name, attrs: { value: name } }))
    );
    userSelect.value = chosen;
  };
  const drawStatus = () => {
    busy.hidden = !model.get("loading");
    const text = String(model.get("notice") ?? "");
    notice.textContent = text;
    notice.hidden = !text;
  };
  const setFilter = (name, value) => {
    if (model.get(name) === value) return;
    model.set(name, value);
    model.save_changes();
  };
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
  const tick = setInterval(draw, 3e4);
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
var history_default = { initialize, render };
export {
  CONFIRM_MS,
  history_default as default,
  relativeTime
};
