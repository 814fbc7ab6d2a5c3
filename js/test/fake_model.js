// An in-memory stand-in for the anywidget model (Backbone semantics where it matters:
// `set` changes the value then fires `change:<name>`; `off(event, cb)` removes one).

export class FakeModel {
  /** @param {Record<string, any>} state */
  constructor(state = {}) {
    this.state = { ...state };
    /** @type {Map<string, Set<Function>>} */
    this.handlers = new Map();
    /** @type {any[]} messages the view sent to the kernel */
    this.sent = [];
    /** @type {any[]} the callbacks passed with each sent message (same order) */
    this.callbacks = [];
    this.saves = 0;
  }

  get(name) {
    return this.state[name];
  }

  set(name, value) {
    this.state[name] = value;
    this.emit(`change:${name}`, value);
  }

  save_changes() {
    this.saves += 1;
  }

  on(event, cb) {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event).add(cb);
  }

  off(event, cb) {
    if (cb === undefined) this.handlers.delete(event);
    else this.handlers.get(event)?.delete(cb);
  }

  send(content, callbacks) {
    this.sent.push(structuredClone(content));
    this.callbacks.push(callbacks);
  }

  // --- test helpers: what the kernel would do ---

  /** Several traits in one state message: all values first, then the events. */
  update(values) {
    Object.assign(this.state, values);
    for (const [name, value] of Object.entries(values)) this.emit(`change:${name}`, value);
  }

  /** The kernel's IOPub status for the `i`-th message sent ("busy": it started on it). */
  status(i, state = "busy") {
    this.callbacks[i]?.iopub?.status?.({ content: { execution_state: state } });
  }

  /** A custom message from the kernel. */
  custom(msg) {
    this.emit("msg:custom", msg, []);
  }

  emit(event, ...args) {
    for (const cb of [...(this.handlers.get(event) ?? [])]) cb(...args);
  }

  listenerCount() {
    let n = 0;
    for (const set of this.handlers.values()) n += set.size;
    return n;
  }

  /** Messages sent since the last call. */
  take() {
    return this.sent.splice(0);
  }
}

/** Render `widget` into a fresh element; returns {el, cleanup}. */
export function mount(widget, model) {
  const el = document.createElement("div");
  document.body.append(el);
  widget.initialize?.({ model });
  const cleanup = widget.render({ model, el });
  return { el, cleanup };
}

export const EVIL = "<img src=x onerror=alert(1)>";
