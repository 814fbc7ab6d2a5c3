// Two-party OT between one browser view and the kernel (ot.js client states).
//
// The kernel is the server: it numbers every change of the text with a revision
// `rev` and keeps the recent history. This view is a client in one of three states:
//   synchronized          nothing unacknowledged
//   awaiting confirm      one edit sent (`outstanding`), waiting for its ack
//   awaiting with buffer  plus later local edits composed into `buffer`
// Wire (see src/livewidgets/jupyter/widgets/shared_text.py):
//   view -> kernel  {type: "edit", view, rev, delta, anchor, head}
//                   {type: "cursor", view, rev, anchor, head}   (only when synchronized)
//                   {type: "resync", view}
//   kernel -> views {type: "sync", rev, delta}                   a change this view has not made
//                   {type: "ack", view, rev, delta}              `view`'s edit became `rev`
//                   {type: "reset", view, rev, value}            start over from `value`
// Deltas are in UTF-16 units, the base of `edit` is the text at `rev`. Both sides
// put the view's insert first when inserts meet at one position.

import { apply, compose, diff, isNoop, transform, transformPosition } from "./ot.js";

/** @typedef {import("./ot.js").Delta} Delta */
/** @typedef {{anchor: number, head: number}} Selection */
/** @typedef {{type: string, [key: string]: any}} Message */

export class TextSync {
  /**
   * @param {object} options
   * @param {string} options.view   this view's id (tells its acks from other views')
   * @param {string} options.value  the text at `rev`
   * @param {number} options.rev
   * @param {(msg: Message) => void} options.send
   */
  constructor({ view, value, rev, send }) {
    this.view = view;
    this.value = value;
    this.rev = rev;
    this.send = send;
    /** @type {Delta | null} sent, not acknowledged */
    this.outstanding = null;
    /** @type {Delta | null} made while waiting, not sent yet */
    this.buffer = null;
    /** @type {Selection | null} the last selection, to send once synchronized */
    this.selection = null;
    /** @type {Selection | null} the selection the kernel knows */
    this.sentSelection = null;
    /** @type {string[]} undo/redo requests waiting for the edits before them */
    this.commands = [];
  }

  /**
   * Ask the kernel to undo or redo (its session's own edits of this text). Sent after
   * every edit made before it is acknowledged, so it undoes the latest keystrokes.
   * @param {"undo" | "redo"} type
   */
  command(type) {
    this.commands.push(type);
    if (this.outstanding === null) this._flushCommands();
  }

  _flushCommands() {
    for (const type of this.commands.splice(0)) this.send({ type, view: this.view });
  }

  get synchronized() {
    return this.outstanding === null;
  }

  /**
   * The user changed the text to `value` (an input event); `selection` is the caret after.
   * @param {string} value @param {Selection} selection
   * @returns {Delta | null} the local delta (null if nothing changed)
   */
  edit(value, selection) {
    const delta = diff(this.value, value, selection.head);
    this.value = value;
    this.selection = selection;
    if (isNoop(delta)) return null;
    if (this.outstanding === null) {
      this.outstanding = delta;
      this._sendEdit(delta);
    } else {
      this.buffer = this.buffer === null ? delta : compose(this.buffer, delta);
    }
    return delta;
  }

  /** The caret moved without an edit. @param {Selection} selection */
  moveCursor(selection) {
    this.selection = selection;
    this._flushCursor();
  }

  /**
   * Handle a kernel message.
   * @param {Message} msg
   * @returns {{delta: Delta | null, reset: boolean} | null} what to apply to the display
   *   (`delta` against the text before, or a full reset to `this.value`), null if nothing.
   */
  receive(msg) {
    if (!msg || typeof msg !== "object") return null;
    if (msg.type === "reset") {
      if (msg.view != null && msg.view !== this.view) return null;
      this.outstanding = this.buffer = null;
      this.value = String(msg.value ?? "");
      this.rev = msg.rev;
      this.sentSelection = null;
      this._flushCursor();
      return { delta: null, reset: true };
    }
    if (msg.type === "ack" && msg.view === this.view) return this._ack(msg.rev);
    if (msg.type === "ack" || msg.type === "sync") return this._remote(msg.rev, msg.delta);
    return null;
  }

  /** @param {number} rev */
  _ack(rev) {
    if (this.outstanding === null) return null; // an ack for a previous life (after a reset)
    this.rev = rev;
    this.outstanding = this.buffer;
    this.buffer = null;
    if (this.outstanding !== null) this._sendEdit(this.outstanding);
    else {
      this._flushCommands();
      this._flushCursor();
    }
    return null;
  }

  /** @param {number} rev @param {Delta} delta */
  _remote(rev, delta) {
    if (typeof rev !== "number" || rev <= this.rev) return null; // already included
    if (rev !== this.rev + 1) {
      // A gap: a message was lost. Ask for the whole text rather than guess.
      this.send({ type: "resync", view: this.view });
      return null;
    }
    let d = delta;
    try {
      if (this.outstanding !== null) [this.outstanding, d] = transform(this.outstanding, d);
      if (this.buffer !== null) [this.buffer, d] = transform(this.buffer, d);
      this.value = apply(this.value, d);
    } catch (error) {
      console.warn("[anywidget] livewidgets: cannot apply a remote edit, resyncing", error);
      this.send({ type: "resync", view: this.view });
      return null;
    }
    this.rev = rev;
    // Peers move our published cursor through the same edit: no need to resend it.
    this.selection = moveSelection(this.selection, d);
    this.sentSelection = moveSelection(this.sentSelection, d);
    return { delta: d, reset: false };
  }

  /**
   * Map a position given at the kernel's `rev` into this view's text (through the
   * edits the kernel has not seen yet).
   * @param {number} pos
   */
  toLocal(pos) {
    if (this.outstanding !== null) pos = transformPosition(pos, this.outstanding);
    if (this.buffer !== null) pos = transformPosition(pos, this.buffer);
    return Math.min(Math.max(pos, 0), this.value.length);
  }

  /** @param {Delta} delta */
  _sendEdit(delta) {
    const sel = this.selection ?? { anchor: 0, head: 0 };
    this.sentSelection = sel;
    this.send({ type: "edit", view: this.view, rev: this.rev, delta, ...sel });
  }

  _flushCursor() {
    // A cursor is only meaningful to the kernel in the text at `rev`, so it waits
    // while edits are unacknowledged (they carry the selection themselves).
    const sel = this.selection;
    if (sel === null || this.outstanding !== null) return;
    const last = this.sentSelection;
    if (last && last.anchor === sel.anchor && last.head === sel.head) return;
    this.sentSelection = sel;
    this.send({ type: "cursor", view: this.view, rev: this.rev, ...sel });
  }
}

/** @param {Selection | null} sel @param {Delta} delta @returns {Selection | null} */
function moveSelection(sel, delta) {
  if (sel === null) return null;
  return { anchor: transformPosition(sel.anchor, delta), head: transformPosition(sel.head, delta) };
}
