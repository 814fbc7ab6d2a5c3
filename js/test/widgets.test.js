import { afterEach, describe, expect, it, vi } from "vitest";
import chat from "../src/chat.js";
import conflict from "../src/conflict_resolver.js";
import connection from "../src/connection_status.js";
import poll from "../src/poll.js";
import presence from "../src/presence.js";
import inspector from "../src/state_inspector.js";
import { HELD_MS, HELD_TEXT, initialsOf, readableOn, safeColor } from "../src/util.js";
import { EVIL, FakeModel, mount } from "./fake_model.js";

afterEach(() => {
  document.body.replaceChildren();
  vi.useRealTimers();
});

/** Every view: cleanup leaves no model listener and no DOM behind. */
function expectCleanup(model, el, cleanup) {
  expect(model.listenerCount()).toBeGreaterThan(0);
  cleanup();
  expect(model.listenerCount()).toBe(0);
  expect(el.children).toHaveLength(0);
}

describe("Presence", () => {
  const peers = [
    {
      client_id: "me",
      name: "Ada Lovelace",
      initials: "AL",
      color: "hsl(200, 70%, 45%)",
      status: "active",
      label: "",
      is_self: true,
    },
    {
      client_id: "x",
      name: EVIL,
      initials: "<I",
      color: "#ffeb3b",
      status: "idle",
      label: "cell 3",
      kernel: "busy",
    },
  ];

  it("draws one avatar per peer with initials, colour, title and label", () => {
    const model = new FakeModel({ peers, error: "" });
    const { el } = mount(presence, model);
    const avatars = [...el.querySelectorAll(".lw-avatar")];
    expect(avatars).toHaveLength(2);
    expect(avatars[0].textContent).toBe("AL");
    expect(avatars[0].classList.contains("lw-self")).toBe(true);
    expect(avatars[0].title).toContain("(you)");
    expect(avatars[1].title).toContain(EVIL);
    expect(avatars[1].classList.contains("lw-status-idle")).toBe(true);
    expect(avatars[1].querySelector(".lw-avatar-label")?.textContent).toBe("cell 3");
    expect(avatars[1].querySelector(".lw-avatar-busy")).not.toBeNull();
    expect(el.querySelector("img")).toBeNull();
    // Light background (yellow) gets dark initials, a mid blue gets white.
    const circle = /** @type {HTMLElement} */ (avatars[1].querySelector(".lw-avatar-circle"));
    expect(circle.style.color).toMatch(/#111|rgb\(17, 17, 17\)/);
  });

  it("follows changes and says when nobody else is here", () => {
    const model = new FakeModel({ peers: [peers[0]], error: "" });
    const { el, cleanup } = mount(presence, model);
    expect(el.textContent).toContain("nobody else here yet");
    model.set("peers", peers);
    expect(el.querySelectorAll(".lw-avatar")).toHaveLength(2);
    expectCleanup(model, el, cleanup);
  });
});

describe("ConnectionStatus", () => {
  const base = {
    state: "connected",
    attempt: 0,
    retry_delay: 0,
    retry_id: 0,
    rtt_ms: 12.4,
    queue_depth: 0,
    in_flight: 0,
    version: 3,
    last_error: "",
    gave_up: false,
    error: "",
  };

  it("shows state and RTT", () => {
    const model = new FakeModel(base);
    const { el } = mount(connection, model);
    expect(el.querySelector(".lw-conn")?.className).toContain("lw-conn-connected");
    expect(el.textContent).toContain("connected");
    expect(el.textContent).toContain("12 ms");
  });

  it("says how many changes wait behind a running cell", () => {
    const model = new FakeModel({ ...base, held: 0 });
    const { el } = mount(connection, model);
    const badge = /** @type {HTMLElement} */ (el.querySelector(".lw-conn"));
    expect(badge.getAttribute("role")).toBe("status");
    expect(el.textContent).not.toContain("held");
    model.update({ held: 2 });
    expect(el.textContent).toContain("2 changes held until the cell finishes");
    expect(badge.classList.contains("lw-conn-held")).toBe(true);
    model.update({ held: 0 });
    expect(el.textContent).not.toContain("held");
    expect(badge.classList.contains("lw-conn-held")).toBe(false);
  });

  it("counts down to the next reconnect attempt", () => {
    vi.useFakeTimers();
    const model = new FakeModel(base);
    const { el, cleanup } = mount(connection, model);
    model.update({
      state: "reconnecting",
      attempt: 3,
      retry_delay: 2,
      retry_id: 1,
      queue_depth: 4,
    });
    const text = () => el.querySelector(".lw-conn")?.textContent ?? "";
    expect(text()).toContain("reconnecting (attempt 3)");
    expect(text()).toContain("next try in 2.0 s");
    expect(text()).toContain("queue 4");
    vi.advanceTimersByTime(1000);
    expect(text()).toMatch(/next try in (1\.0|0\.9) s/);
    vi.advanceTimersByTime(1500);
    expect(text()).not.toContain("next try");
    expect(vi.getTimerCount()).toBe(0); // the ticker stops by itself
    model.update({ retry_delay: 5, retry_id: 2 });
    expect(vi.getTimerCount()).toBe(1);
    cleanup();
    expect(vi.getTimerCount()).toBe(0);
  });

  it("marks a session that gave up, with the error as a tooltip", () => {
    const model = new FakeModel({ ...base, state: "closed", gave_up: true, last_error: EVIL });
    const { el, cleanup } = mount(connection, model);
    const badge = /** @type {HTMLElement} */ (el.querySelector(".lw-conn"));
    expect(badge.className).toContain("lw-conn-gaveup");
    expect(badge.title).toContain(EVIL);
    expectCleanup(model, el, cleanup);
  });
});

describe("Poll", () => {
  const state = {
    question: "Tea or coffee?",
    options: ["tea", "coffee", EVIL],
    counts: { tea: 3, coffee: 1, [EVIL]: 0 },
    total: 4,
    my_vote: null,
    error: "",
  };

  it("shows options with counts and bars", () => {
    const model = new FakeModel(state);
    const { el } = mount(poll, model);
    expect(el.querySelector(".lw-poll-question")?.textContent).toBe("Tea or coffee?");
    const buttons = [...el.querySelectorAll("button")];
    expect(buttons.map((b) => b.querySelector(".lw-poll-label")?.textContent)).toEqual([
      "tea",
      "coffee",
      EVIL,
    ]);
    expect(buttons.map((b) => b.querySelector(".lw-poll-count")?.textContent)).toEqual([
      "3",
      "1",
      "0",
    ]);
    expect(/** @type {HTMLElement} */ (buttons[0].querySelector(".lw-poll-bar")).style.width).toBe(
      "75.0%",
    );
    expect(el.querySelector("img")).toBeNull();
  });

  it("sends a vote on click and marks my choice", () => {
    const model = new FakeModel(state);
    const { el, cleanup } = mount(poll, model);
    /** @type {HTMLElement} */ (
      el.querySelectorAll("button")[2].querySelector(".lw-poll-label")
    ).click();
    expect(model.take()).toEqual([{ type: "vote", option: EVIL }]);
    model.update({ counts: { tea: 3, coffee: 1, [EVIL]: 1 }, total: 5, my_vote: EVIL });
    const chosen = el.querySelector(".lw-chosen");
    expect(chosen?.getAttribute("aria-pressed")).toBe("true");
    expect(chosen?.querySelector(".lw-poll-count")?.textContent).toBe("1");
    expect(el.querySelector(".lw-poll-total")?.textContent).toContain("5 votes");
    expectCleanup(model, el, cleanup);
  });
});

describe("Chat", () => {
  const messages = [
    { id: "1", user: "ada", name: "Ada", color: "#c00", text: "hi", ts: 1700000000 },
    {
      id: "2",
      user: "eve",
      name: EVIL,
      color: "javascript:alert(1)",
      text: `<b>bold</b> ${EVIL}`,
      ts: 1700000001,
    },
  ];

  it("renders messages as text", () => {
    const model = new FakeModel({ messages, me: "ada", max_length: 100, error: "" });
    const { el } = mount(chat, model);
    const items = [...el.querySelectorAll(".lw-chat-msg")];
    expect(items).toHaveLength(2);
    expect(items[0].classList.contains("lw-mine")).toBe(true);
    expect(items[1].querySelector(".lw-chat-name")?.textContent).toBe(EVIL);
    expect(items[1].querySelector(".lw-chat-text")?.textContent).toBe(`<b>bold</b> ${EVIL}`);
    expect(el.querySelector("img, b")).toBeNull();
    expect(/** @type {HTMLInputElement} */ (el.querySelector("input")).maxLength).toBe(100);
  });

  it("sends the input on submit and clears it", () => {
    const model = new FakeModel({ messages: [], me: "ada", max_length: 100, error: "" });
    const { el, cleanup } = mount(chat, model);
    const input = /** @type {HTMLInputElement} */ (el.querySelector("input"));
    const form = /** @type {HTMLFormElement} */ (el.querySelector("form"));
    input.value = "  hello  ";
    form.dispatchEvent(new Event("submit", { cancelable: true }));
    expect(input.value).toBe("");
    input.value = "   ";
    form.dispatchEvent(new Event("submit", { cancelable: true }));
    expect(model.take()).toEqual([{ type: "send", text: "hello" }]);
    model.set("messages", messages);
    expect(el.querySelectorAll(".lw-chat-msg")).toHaveLength(2);
    expectCleanup(model, el, cleanup);
  });

  it("scrolls to the newest message when the reader is at the bottom", () => {
    const model = new FakeModel({ messages, me: "ada", max_length: 100, error: "" });
    const { el } = mount(chat, model);
    const list = /** @type {HTMLElement} */ (el.querySelector(".lw-chat-list"));
    const spy = vi.spyOn(list, "scrollTop", "set");
    model.set("messages", [...messages, { id: "3", user: "ada", name: "Ada", text: "new", ts: 0 }]);
    expect(spy).toHaveBeenCalled();
  });
});

describe("StateInspector", () => {
  const data = { poll: { votes: { tea: 2 }, voters: {} }, title: EVIL, list: [1, true, null] };

  it("renders a collapsible tree with typed leaves", () => {
    const model = new FakeModel({ path: "", data, version: 7 });
    const { el } = mount(inspector, model);
    expect(el.querySelector(".lw-inspector-head")?.textContent).toContain("v7");
    const root = /** @type {HTMLDetailsElement} */ (el.querySelector("details[data-path='']"));
    expect(root.open).toBe(true);
    const title = el.querySelector(".lw-tree-leaf[data-path='title'] .lw-tree-value");
    expect(title?.textContent).toBe(JSON.stringify(EVIL));
    expect(el.querySelector("img")).toBeNull();
    // Closed branches render their children lazily.
    const pollNode = /** @type {HTMLDetailsElement} */ (
      el.querySelector("details[data-path='poll']")
    );
    expect(pollNode.open).toBe(false);
    expect(pollNode.querySelector(".lw-tree-leaf")).toBeNull();
  });

  it("keeps open branches open across updates", async () => {
    const model = new FakeModel({ path: "", data, version: 7 });
    const { el, cleanup } = mount(inspector, model);
    const pollNode = /** @type {HTMLDetailsElement} */ (
      el.querySelector("details[data-path='poll']")
    );
    pollNode.open = true;
    pollNode.dispatchEvent(new Event("toggle"));
    model.update({ data: { ...data, poll: { votes: { tea: 3 }, voters: {} } }, version: 8 });
    const again = /** @type {HTMLDetailsElement} */ (el.querySelector("details[data-path='poll']"));
    expect(again.open).toBe(true);
    expect(again.querySelector(".lw-tree-meta")?.textContent).toBe("{2}");
    expectCleanup(model, el, cleanup);
  });
});

describe("ConflictResolver", () => {
  const state = {
    path: "doc",
    active: false,
    conflict_path: "",
    mine: null,
    mine_exists: true,
    theirs: null,
    their_version: 0,
    message: "",
    resolved: "",
    error: "",
  };

  it("is hidden until a conflict arrives, then shows both sides", () => {
    const model = new FakeModel(state);
    const { el } = mount(conflict, model);
    const root = /** @type {HTMLElement} */ (el.querySelector(".lw-conflict"));
    expect(root.hidden).toBe(true);
    model.update({
      active: true,
      conflict_path: "doc/title",
      mine: { t: EVIL },
      theirs: "theirs",
      their_version: 12,
      message: "changed",
    });
    expect(root.hidden).toBe(false);
    expect(root.textContent).toContain("Conflict at doc/title");
    const values = [...el.querySelectorAll(".lw-conflict-value")].map((p) => p.textContent);
    expect(values).toEqual([JSON.stringify({ t: EVIL }, null, 2), '"theirs"']);
    expect(root.textContent).toContain("Theirs (v12)");
    expect(el.querySelector("img")).toBeNull();
  });

  it("sends keep_mine / keep_theirs", () => {
    const model = new FakeModel({ ...state, active: true });
    const { el, cleanup } = mount(conflict, model);
    const [mine, theirs] = [...el.querySelectorAll("button")];
    mine.click();
    theirs.click();
    expect(model.take()).toEqual([{ type: "keep_mine" }, { type: "keep_theirs" }]);
    model.set("active", false);
    expect(/** @type {HTMLElement} */ (el.querySelector(".lw-conflict")).hidden).toBe(true);
    expectCleanup(model, el, cleanup);
  });
});

describe("util", () => {
  it("readableOn picks black on light colours and white on dark ones", () => {
    expect(readableOn("#ffffff")).toBe("#111");
    expect(readableOn("#000")).toBe("#fff");
    expect(readableOn("hsl(60, 70%, 45%)")).toBe("#111");
    expect(readableOn("hsl(240, 70%, 45%)")).toBe("#fff");
    expect(readableOn("rgb(200, 30, 30)")).toBe("#fff");
    expect(readableOn("not a colour")).toBe("#fff");
  });

  it("safeColor lets plain colours through only", () => {
    expect(safeColor("hsl(10, 70%, 45%)")).toBe("hsl(10, 70%, 45%)");
    expect(safeColor("#abc")).toBe("#abc");
    expect(safeColor("rebeccapurple")).toBe("rebeccapurple");
    expect(safeColor("red; background: url(x)")).toContain("--jp-brand-color1");
    expect(safeColor("url(javascript:alert(1))")).toContain("--jp-brand-color1");
    expect(safeColor(undefined)).toContain("--jp-brand-color1");
  });

  it("initialsOf", () => {
    expect(initialsOf("Ada Lovelace")).toBe("AL");
    expect(initialsOf("grace")).toBe("G");
    expect(initialsOf("\u{1F600} smile")).toBe("S");
    expect(initialsOf("")).toBe("?");
    expect(initialsOf("Bob <img src=x>")).toBe("BI");
    expect(initialsOf("e\u0301mile zola")).toBe("E\u0301Z");
  });
});

describe("held changes (a busy kernel without subshells)", () => {
  const pollState = {
    question: "Tea or coffee?",
    options: ["tea", "coffee"],
    counts: { tea: 0, coffee: 0 },
    total: 0,
    my_vote: null,
    error: "",
  };

  it("says so while a vote waits for the kernel, and stops once it is handled", () => {
    vi.useFakeTimers();
    const model = new FakeModel(pollState);
    const { el } = mount(poll, model);
    const line = /** @type {HTMLElement} */ (el.querySelector(".lw-held"));
    expect(line.getAttribute("role")).toBe("status");
    expect(line.getAttribute("aria-live")).toBe("polite");
    expect(line.hidden).toBe(true);
    /** @type {HTMLElement} */ (el.querySelector("button[data-option='tea']")).click();
    vi.advanceTimersByTime(HELD_MS - 50);
    expect(line.hidden).toBe(true); // a kernel that answers at once never shows it
    vi.advanceTimersByTime(100);
    expect(line.hidden).toBe(false);
    expect(line.textContent).toBe(HELD_TEXT);
    expect(el.querySelector(".lw-poll")?.classList.contains("lw-held-on")).toBe(true);
    model.status(0, "busy"); // the cell ended: the kernel starts on the vote
    expect(line.hidden).toBe(true);
    expect(line.textContent).toBe("");
    expect(el.querySelector(".lw-held-on")).toBeNull();
  });

  it("never shows when the kernel starts on each message in time", () => {
    vi.useFakeTimers();
    const model = new FakeModel({ messages: [], me: "ada", max_length: 4000, error: "" });
    const { el } = mount(chat, model);
    const input = /** @type {HTMLInputElement} */ (el.querySelector(".lw-chat-input"));
    const form = /** @type {HTMLFormElement} */ (el.querySelector("form"));
    for (let i = 0; i < 3; i++) {
      input.value = `hi ${i}`;
      form.dispatchEvent(new Event("submit", { cancelable: true }));
      vi.advanceTimersByTime(HELD_MS / 2);
      model.status(i, "busy");
      model.status(i, "idle");
    }
    vi.advanceTimersByTime(5 * HELD_MS);
    expect(model.take()).toEqual([0, 1, 2].map((i) => ({ type: "send", text: `hi ${i}` })));
    expect(/** @type {HTMLElement} */ (el.querySelector(".lw-held")).hidden).toBe(true);
  });
});
