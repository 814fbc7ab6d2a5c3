// ConnectionStatus view: a badge with the connection state, the reconnect attempt
// and a live countdown to the next one, RTT, queue depth, and how many of this
// kernel's widget changes wait behind a running cell (no kernel subshells).

import { Disposer, errorLine, h } from "./util.js";

/** @typedef {import("./util.js").Model} Model */

const LABELS = /** @type {Record<string, string>} */ ({
  connected: "connected",
  connecting: "connecting\u2026",
  reconnecting: "reconnecting",
  disconnected: "disconnected",
  closed: "closed",
});

/** @param {{model: Model}} _ctx */
function initialize(_ctx) {}

/** @param {{model: Model, el: HTMLElement}} ctx */
function render({ model, el }) {
  const d = new Disposer();
  const dot = h("span", { className: "lw-conn-dot" });
  const state = h("span", { className: "lw-conn-state" });
  const detail = h("span", { className: "lw-conn-detail" });
  const badge = h(
    "div",
    { className: "lw-conn", attrs: { role: "status", "aria-live": "polite" } },
    [dot, state, detail],
  );
  const root = h("div", { className: "lw-widget lw-connection" }, [badge, errorLine(model, d)]);
  el.append(root);
  d.add(() => root.remove());

  /** performance.now() of the next attempt (kernel and browser clocks differ: count locally) */
  let retryAt = 0;
  /** @type {ReturnType<typeof setInterval> | null} */
  let ticking = null;
  const stopTicking = () => {
    if (ticking !== null) clearInterval(ticking);
    ticking = null;
  };
  d.add(stopTicking);

  const draw = () => {
    const s = String(model.get("state") ?? "disconnected");
    const attempt = Number(model.get("attempt") ?? 0);
    badge.className = `lw-conn lw-conn-${s.replace(/[^a-z]/g, "")}${model.get("gave_up") ? " lw-conn-gaveup" : ""}`;
    state.textContent =
      (LABELS[s] ?? s) + (s === "reconnecting" && attempt ? ` (attempt ${attempt})` : "");
    const parts = [];
    const remaining = Math.max(0, (retryAt - performance.now()) / 1000);
    if (s === "reconnecting" && remaining > 0) parts.push(`next try in ${remaining.toFixed(1)} s`);
    const rtt = model.get("rtt_ms");
    if (s === "connected" && typeof rtt === "number") parts.push(`${Math.round(rtt)} ms`);
    const queue = Number(model.get("queue_depth") ?? 0);
    if (queue > 0 || s !== "connected") parts.push(`queue ${queue}`);
    const held = Number(model.get("held") ?? 0);
    if (held > 0) parts.push(`${held} change${held === 1 ? "" : "s"} held until the cell finishes`);
    detail.textContent = parts.join(" \u00b7 ");
    badge.classList.toggle("lw-conn-held", held > 0);
    const error = String(model.get("last_error") ?? "");
    badge.title = error ? `last error: ${error}` : `room version ${model.get("version") ?? 0}`;
    if (remaining <= 0 || s !== "reconnecting") stopTicking();
  };

  const onRetry = () => {
    const delay = Number(model.get("retry_delay") ?? 0);
    retryAt = performance.now() + delay * 1000;
    stopTicking();
    if (delay > 0) ticking = setInterval(draw, 100);
    draw();
  };
  for (const name of [
    "state",
    "attempt",
    "rtt_ms",
    "queue_depth",
    "version",
    "last_error",
    "gave_up",
    "held",
  ]) {
    d.model(model, `change:${name}`, draw);
  }
  d.model(model, "change:retry_id", onRetry);
  d.model(model, "change:retry_delay", onRetry);
  if (Number(model.get("retry_delay") ?? 0) > 0) onRetry();
  draw();
  return () => d.dispose();
}

export default { initialize, render };
