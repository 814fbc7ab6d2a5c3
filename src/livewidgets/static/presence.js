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
function initialsOf(name) {
  const firsts = String(name || "").replace(/[_.]/g, " ").split(/\s+/).map((w) => /[\p{L}\p{N}]\p{M}*/u.exec(w)?.[0]).filter((x) => x !== void 0);
  const letters = firsts.length > 1 ? firsts.slice(0, 2) : firsts.slice(0, 1);
  return letters.join("").toUpperCase() || "?";
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

// src/presence.js
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
      title: `${name}${you}: ${status}${kernel}${label ? ` · ${label}` : ""}`,
      attrs: { role: "listitem", "data-client": String(peer.client_id ?? "") }
    },
    [
      h("span", {
        className: "lw-avatar-circle",
        text: String(peer.initials || initialsOf(name)),
        style: { "background-color": color, color: readableOn(color) }
      }),
      label ? h("span", { className: "lw-avatar-label", text: label }) : null,
      peer.kernel === "busy" ? h("span", { className: "lw-avatar-busy", title: activity || "kernel busy" }) : null,
      peer.kernel === "busy" && activity ? h("span", { className: "lw-avatar-activity lw-muted", text: activity }) : null
    ]
  );
}
function initialize(_ctx) {
}
function render({ model, el }) {
  const d = new Disposer();
  const bar = h("div", {
    className: "lw-presence-bar",
    attrs: { role: "list", "aria-label": "people here" }
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
      const text = me && me.status === "offline" ? "offline" : "nobody else here yet";
      bar.append(h("span", { className: "lw-muted lw-presence-note", text }));
    }
  };
  d.model(model, "change:peers", draw);
  draw();
  return () => d.dispose();
}
var presence_default = { initialize, render };
export {
  presence_default as default
};
