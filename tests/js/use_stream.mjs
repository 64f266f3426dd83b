// The official React hook `useStream` (@langchain/langgraph-sdk/react), rendered in node with
// react-test-renderer and the options chat front ends use (fetchStateHistory, reconnectOnMount,
// submits with streamSubgraphs and streamResumable), on the `chat` graph of tests/api_graphs.py:
//
//   node use_stream.mjs URL API_KEY|none [PACKAGE]
//
// PACKAGE is the client package to take the hook from: @langchain/langgraph-sdk (the latest,
// the default) or langgraph-sdk-2 (2.0.0, an alias in package.json: the release whose hook
// sends the thread head's checkpoint with every submit).
// submit twice; reload the page (unmount, mount a fresh hook on the same threadId) and find the
// thread as it was; branch an earlier message and switch between the branches; submit a slow
// run, reload while it runs, and rejoin it. Prints ONE JSON line with what it observed (with
// `error` and `failed_at` on a failure, then exits 1).
//
// A "page" is one mount of the component. Its requests go through the page's fetch, which a
// reload aborts, as a browser does; sessionStorage outlives the page, as in a browser tab.
import React from "react";
import TestRenderer from "react-test-renderer";

const [url, key, sdk = "@langchain/langgraph-sdk"] = process.argv.slice(2);
const { Client } = await import(sdk);
const { useStream } = await import(`${sdk}/react`);
const apiKey = key === "none" ? null : key;
const observed = {};
let current = "start";

/** The tab's sessionStorage: what reconnectOnMount keeps the running run's id in. */
class TabStorage {
  #items = new Map();
  get length() {
    return this.#items.size;
  }
  key(index) {
    return [...this.#items.keys()][index] ?? null;
  }
  getItem(name) {
    return this.#items.has(name) ? this.#items.get(name) : null;
  }
  setItem(name, value) {
    this.#items.set(name, String(value));
  }
  removeItem(name) {
    this.#items.delete(name);
  }
  clear() {
    this.#items.clear();
  }
  keys() {
    return [...this.#items.keys()];
  }
}

const storage = new TabStorage();
globalThis.window = { sessionStorage: storage }; // the hook reads window.sessionStorage

// The page's requests, as "METHOD /path" with the thread's and runs' ids named, and the
// fields of a run's body the hook decides.
const nativeFetch = globalThis.fetch;
let page = new AbortController();
let requests = [];

function describe(method, path, init) {
  const named = path
    .replace(/^\/threads\/(?!search$|count$|prune$)[^/]+/, "/threads/{thread}")
    .replace(/\/runs\/(?!stream$|wait$)[^/]+/, "/runs/{run}");
  const request = { call: `${method} ${named}` };
  if (path.endsWith("/runs/stream") && typeof init.body === "string") {
    const body = JSON.parse(init.body);
    request.checkpoint = body.checkpoint != null;
    request.stream_resumable = body.stream_resumable ?? null;
    request.stream_subgraphs = body.stream_subgraphs ?? null;
    request.on_disconnect = body.on_disconnect ?? null;
    request.stream_mode = body.stream_mode ?? null;
  }
  const headers = new Headers(init.headers ?? {});
  if (headers.has("last-event-id")) request.last_event_id = headers.get("last-event-id");
  return request;
}

const refused = []; // "METHOD /path -> status" of every answer that was not a success

globalThis.fetch = async (input, init = {}) => {
  const target = new URL(typeof input === "string" ? input : input.url);
  const method = (init.method ?? "GET").toUpperCase();
  const request = describe(method, target.pathname, init);
  requests.push(request);
  const signal = init.signal ? AbortSignal.any([init.signal, page.signal]) : page.signal;
  const response = await nativeFetch(input, { ...init, signal });
  if (!response.ok) refused.push(`${request.call} -> ${response.status}`);
  return response;
};

// -- the component -------------------------------------------------------------------------------

let latest = null; // what the hook returned at the last render
const hookErrors = []; // what the hook's onError got
const unhandled = []; // rejections nobody handled: a browser logs them, node would exit
process.on("unhandledRejection", (reason) => unhandled.push(String(reason?.message ?? reason)));

function Chat({ initialThreadId }) {
  const [threadId, setThreadId] = React.useState(initialThreadId);
  const stream = useStream({
    apiUrl: url,
    apiKey,
    assistantId: "chat",
    threadId,
    onThreadId: setThreadId,
    fetchStateHistory: true,
    reconnectOnMount: true,
    messagesKey: "messages",
    onError: (error) => hookErrors.push(String(error?.message ?? error)),
  });
  latest = {
    stream,
    threadId,
    messages: stream.messages, // read as a chat UI reads it (the hook streams messages then)
    isLoading: stream.isLoading,
    isThreadLoading: stream.isThreadLoading,
    history: stream.history,
    branch: stream.branch,
    error: stream.error,
  };
  return null;
}

let renderer = null;
let urlThreadId = null; // the thread the first submit made: the page's URL, kept over reloads

function mount(threadId) {
  latest = null;
  page = new AbortController();
  requests = [];
  renderer = TestRenderer.create(React.createElement(Chat, { initialThreadId: threadId }));
}

/** A page reload: the page's requests end, the component goes, a fresh one mounts. */
function reload(threadId) {
  page.abort();
  renderer.unmount();
  mount(threadId);
}

// -- helpers -------------------------------------------------------------------------------------

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function step(label, fn) {
  current = label;
  return fn();
}

/** Waits until the latest render satisfies `ready`. */
async function until(label, ready, timeout = 30_000) {
  current = label;
  const deadline = Date.now() + timeout;
  while (!(latest && ready(latest))) {
    if (hookErrors.length || unhandled.length) {
      throw new Error(`the hook failed while waiting for ${label}: ${[...hookErrors, ...unhandled]}`);
    }
    if (Date.now() > deadline) {
      const seen = latest && {
        messages: contents(latest.messages),
        isLoading: latest.isLoading,
        isThreadLoading: latest.isThreadLoading,
        error: latest.error ? String(latest.error?.message ?? latest.error) : null,
      };
      throw new Error(`timed out waiting for ${label}; last render: ${JSON.stringify(seen)}`);
    }
    await sleep(20);
  }
  return latest;
}

function contents(messages) {
  return (messages ?? []).map((message) => `${message.type}: ${message.content}`);
}

function idle(view) {
  return !view.isLoading && !view.isThreadLoading;
}

function human(content) {
  return { type: "human", content };
}

const SUBMIT = { streamSubgraphs: true, streamResumable: true };

// -- the flows -----------------------------------------------------------------------------------

async function submitAndReload() {
  mount(null);
  await until("first mount", idle);
  latest.stream.submit({ messages: [human("first")] }, SUBMIT);
  let view = await until("first answer", (v) => idle(v) && v.messages.length === 2);
  urlThreadId = view.threadId;
  latest.stream.submit({ messages: [human("second")] }, SUBMIT);
  view = await until("second answer", (v) => idle(v) && v.messages.length === 4);
  observed.submitted = {
    messages: contents(view.messages),
    history: view.history.length,
    requests: requests.filter((r) => r.call.includes("/runs")),
    storage_left: storage.keys(),
  };

  await step("reload", () => reload(urlThreadId));
  view = await until("thread restored", (v) => idle(v) && v.messages.length === 4);
  observed.reloaded = {
    messages: contents(view.messages),
    same_history: view.history.length === observed.submitted.history,
    requests: requests.map((r) => r.call),
  };
}

async function branch() {
  const edited = latest.messages[2]; // "second"
  const meta = latest.stream.getMessagesMetadata(edited, 2);
  const parent = meta?.firstSeenState?.parent_checkpoint;
  observed.branch_from = { has_parent: parent != null };
  requests = [];
  latest.stream.submit({ messages: [human("second, edited")] }, { ...SUBMIT, checkpoint: parent });
  let view = await until(
    "edited answer",
    (v) => idle(v) && contents(v.messages).includes("ai: you said second, edited"),
  );
  const options = view.stream.getMessagesMetadata(view.messages[2], 2)?.branchOptions ?? [];
  observed.branched = {
    messages: contents(view.messages),
    branch_options: options.length,
    requests: requests.filter((r) => r.call.includes("/runs")),
  };
  const current = view.branch;
  const other = options.find((option) => option !== current);
  await step("setBranch", () => view.stream.setBranch(other));
  view = await until(
    "the other branch",
    (v) => v.branch === other && contents(v.messages).includes("human: second"),
  );
  observed.other_branch = contents(view.messages);

  await step("reload after branching", () => reload(urlThreadId));
  view = await until("branched thread restored", (v) => idle(v) && v.messages.length === 4);
  observed.reloaded_after_branch = {
    messages: contents(view.messages),
    branch_options:
      view.stream.getMessagesMetadata(view.messages[2], 2)?.branchOptions?.length ?? 0,
  };
}

async function rejoin() {
  requests = [];
  const storageKey = `lg:stream:${urlThreadId}`;
  latest.stream.submit({ messages: [human("slow")], seconds: 2 }, SUBMIT).catch(() => {});
  await until(
    "the slow run started",
    (v) => v.isLoading && storage.getItem(storageKey) && contents(v.messages).includes("human: slow"),
  );
  const runId = storage.getItem(storageKey);
  const client = new Client({ apiUrl: url, apiKey });
  const before = await step("runs.get", () => client.runs.get(urlThreadId, runId));
  await step("reload while running", () => reload(urlThreadId));
  const view = await until(
    "rejoined answer",
    (v) => idle(v) && contents(v.messages).includes("ai: you said slow"),
  );
  const runs = await step("runs.list", () => client.runs.list(urlThreadId, { limit: 20 }));
  observed.rejoined = {
    messages: contents(view.messages).slice(-2),
    requests: requests.filter((r) => r.call.includes("/runs")),
    storage_left: storage.keys(),
    run_at_reload: before.status,
    run: runs.find((run) => run.run_id === runId)?.status ?? null,
    runs: runs.map((run) => run.status),
  };
}

try {
  await submitAndReload();
  await branch();
  await rejoin();
  observed.hook_errors = [...hookErrors, ...unhandled];
  observed.refused = refused;
  console.log(JSON.stringify(observed));
} catch (error) {
  observed.failed_at = current;
  observed.error = String(error?.message ?? error).slice(0, 2000);
  observed.hook_errors = [...hookErrors, ...unhandled];
  observed.refused = refused;
  console.log(JSON.stringify(observed));
  process.exitCode = 1;
} finally {
  page.abort();
  renderer?.unmount();
  setTimeout(() => process.exit(), 50); // the SDK's idle timers would keep node alive
}
