import { afterEach, describe, expect, it, vi } from "vitest";
import history, { CONFIRM_MS, relativeTime } from "../src/history.js";
import { EVIL, FakeModel, mount } from "./fake_model.js";

afterEach(() => {
  document.body.replaceChildren();
  vi.useRealTimers();
});

const now = Date.now() / 1000;
const entries = [
  {
    version: 3,
    user: EVIL,
    initials: "I",
    color: "hsl(120, 60%, 40%)",
    time: now - 125,
    iso: "2026-01-01T10:00:00Z",
    client_id: "c2",
    paths: ["chat"],
    ops: [`chat + "${EVIL}"`],
  },
  {
    version: 1,
    user: "ada",
    initials: "A",
    color: "#ffeb3b",
    time: 0,
    iso: "",
    client_id: "c1",
    paths: ["poll/q1/votes/yes", "title"],
    ops: ["poll/q1/votes/yes +1", 'title = "Lunch?"'],
  },
];

function model(extra = {}) {
  return new FakeModel({
    entries,
    users: ["ada", EVIL],
    path_filter: "",
    user_filter: "",
    can_revert: true,
    loading: false,
    more: false,
    notice: "",
    error: "",
    ...extra,
  });
}

describe("History", () => {
  it("renders entries newest first with user, times, paths and op lines as text", () => {
    const { el } = mount(history, model());
    const items = [...el.querySelectorAll(".lw-history-entry")];
    expect(items.map((i) => i.getAttribute("data-version"))).toEqual(["3", "1"]);
    expect(items[0].querySelector(".lw-history-name")?.textContent).toBe(EVIL);
    expect(items[0].querySelector(".lw-history-time")?.textContent).toBe("2 min ago");
    expect(items[0].querySelector("time")?.title).toBe("2026-01-01T10:00:00Z");
    expect(items[1].querySelector(".lw-history-time")?.textContent).toBe("time unknown");
    expect(items[1].querySelector(".lw-history-paths")?.textContent).toBe(
      "poll/q1/votes/yes, title",
    );
    const ops = [...items[1].querySelectorAll(".lw-history-op")].map((o) => o.textContent);
    expect(ops).toEqual(["poll/q1/votes/yes +1", 'title = "Lunch?"']);
    expect(el.querySelector("img")).toBeNull();
    const options = [...el.querySelectorAll(".lw-history-user option")].map((o) => o.textContent);
    expect(options).toEqual(["All users", "ada", EVIL]);
  });

  it("the revert button needs a second click within 3 s, then sends the version", () => {
    vi.useFakeTimers();
    const m = model();
    const { el } = mount(history, m);
    const button = () =>
      /** @type {HTMLButtonElement} */ (el.querySelector('[data-version="1"] .lw-history-revert'));
    expect(button().tagName).toBe("BUTTON");
    expect(button().getAttribute("aria-label")).toBe("revert to version 1");
    button().click();
    expect(button().textContent).toBe("Click again to revert");
    expect(m.take()).toEqual([]);
    vi.advanceTimersByTime(CONFIRM_MS + 10);
    expect(button().textContent).toBe("Revert to here");
    button().click();
    // A redraw in between (a live refresh) keeps it armed.
    m.set("entries", [...entries]);
    button().click();
    expect(m.take()).toEqual([{ type: "revert", version: 1 }]);
    expect(button().textContent).toBe("Revert to here");
  });

  it("non-admins get no revert button", () => {
    const { el } = mount(history, model({ can_revert: false }));
    expect(el.querySelector(".lw-history-revert")).toBeNull();
  });

  it("filters set the traits; Load older and refresh send messages", () => {
    vi.useFakeTimers();
    const m = model({ more: true });
    const { el } = mount(history, m);
    const select = /** @type {HTMLSelectElement} */ (el.querySelector(".lw-history-user"));
    select.value = "ada";
    select.dispatchEvent(new Event("change"));
    expect(m.get("user_filter")).toBe("ada");
    const input = /** @type {HTMLInputElement} */ (el.querySelector(".lw-history-path"));
    input.value = " poll ";
    input.dispatchEvent(new Event("input"));
    expect(m.get("path_filter")).toBe("");
    vi.advanceTimersByTime(400);
    expect(m.get("path_filter")).toBe("poll");
    expect(m.saves).toBe(2);
    const older = /** @type {HTMLButtonElement} */ (el.querySelector(".lw-history-older"));
    expect(older.hidden).toBe(false);
    older.click();
    /** @type {HTMLButtonElement} */ (el.querySelector(".lw-history-reload")).click();
    expect(m.take()).toEqual([{ type: "older" }, { type: "refresh" }]);
  });

  it("shows the notice, the error, loading and an empty state; cleans up", () => {
    const m = model({ entries: [] });
    const { el, cleanup } = mount(history, m);
    const empty = /** @type {HTMLElement} */ (el.querySelector(".lw-history-empty"));
    expect(empty.hidden).toBe(false);
    m.update({ notice: "Reverted the room to version 1.", error: "revert failed: forbidden" });
    expect(el.querySelector(".lw-history-notice")?.textContent).toContain("version 1");
    expect(el.querySelector(".lw-error")?.textContent).toBe("revert failed: forbidden");
    m.set("loading", true);
    expect(/** @type {HTMLElement} */ (el.querySelector(".lw-history-loading")).hidden).toBe(false);
    expect(m.listenerCount()).toBeGreaterThan(0);
    cleanup();
    expect(m.listenerCount()).toBe(0);
    expect(el.children).toHaveLength(0);
  });

  it("relativeTime", () => {
    expect(relativeTime(0)).toBe("");
    expect(relativeTime(100, 102)).toBe("just now");
    expect(relativeTime(100, 140)).toBe("40 s ago");
    expect(relativeTime(100, 100 + 7200)).toBe("2 h ago");
    expect(relativeTime(100, 100 + 3 * 86400)).toBe("3 d ago");
  });
});
