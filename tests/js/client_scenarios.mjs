// The official LangGraph JS client (`Client` of @langchain/langgraph-sdk) through one scenario:
//
//   node client_scenarios.mjs URL API_KEY|none SCENARIO [ARGUMENT]
//
// prints ONE JSON line with what it observed and exits 0; on a failure it prints the same line
// with `error` and the step that failed (`failed_at`) and exits 1.
// tests/integration/test_js_client.py runs it against the LangGraph reference server and
// against runqueue, both serving tests/api_graphs.py.
import { Client } from "@langchain/langgraph-sdk";

const [url, apiKey, name, argument] = process.argv.slice(2);
const AGENT = "agent";
const observed = { scenario: name };
let current = "start";

function client(options = {}) {
  return new Client({ apiUrl: url, apiKey: apiKey === "none" ? null : apiKey, ...options });
}

/** Runs one step of a scenario, so that a failure names the step it happened in. */
async function step(label, fn) {
  current = label;
  return fn();
}

/** Runs a step beside others: its failure names it, whatever step runs when it fails. */
async function named(label, fn) {
  try {
    return await fn();
  } catch (error) {
    throw Object.assign(error, { step: label });
  }
}

/** Resolves after `ms`; `unref`: a pending sleep does not keep the process alive. */
function sleep(ms, { unref = false } = {}) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (unref) timer.unref();
  });
}

/** A fresh marker, so that counts and searches see only this scenario's threads. */
function marker() {
  return `js-${Date.now()}-${Math.random().toString(36).slice(2)}`;
}

/** The HTTP status of a call the client refused with an HTTPError, or "ok". */
async function statusOf(promise) {
  try {
    await promise;
    return "ok";
  } catch (error) {
    if (typeof error?.status === "number") return error.status;
    throw error;
  }
}

/** Each entry's parent is the next (older) entry: one line of checkpoints, newest first. */
function chained(history) {
  return history.every(
    (state, i) =>
      i === history.length - 1 ||
      state.parent_checkpoint?.checkpoint_id === history[i + 1].checkpoint?.checkpoint_id,
  );
}

function ids(history) {
  return history.map((state) => state.checkpoint?.checkpoint_id);
}

/** Polls until the run is running (a state update, a reconnect need one in flight). */
async function untilRunning(c, threadId, runId) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const run = await c.runs.get(threadId, runId);
    if (run.status === "running") return;
    if (Date.now() > deadline) throw new Error(`run ${runId} never ran: ${run.status}`);
    await sleep(50);
  }
}

/** A streamed run's parts, without heartbeats nor a closing `end` (runqueue sends one, the
 * reference just closes: tests/integration/test_api_conformance.py lists it). */
async function collect(iterable) {
  const parts = [];
  for await (const part of iterable) {
    if (part.event !== "heartbeat" && part.event !== "end") parts.push(part);
  }
  return parts;
}

function lastValues(parts) {
  return parts.filter((part) => part.event === "values").at(-1)?.data;
}

const scenarios = {
  /** Create a thread, run the graph in the background, join it, read it back. */
  async create() {
    const c = client();
    const mark = marker();
    const thread = await step("threads.create", () => c.threads.create({ metadata: { mark } }));
    const threadId = thread.thread_id;
    observed.created = { status: thread.status, marked: thread.metadata?.mark === mark };
    const run = await step("runs.create", () => c.runs.create(threadId, AGENT, { input: {} }));
    observed.run_status = run.status;
    observed.joined = await step("runs.join", () => c.runs.join(threadId, run.run_id));
    const got = await step("threads.get", () => c.threads.get(threadId));
    observed.thread = { status: got.status, steps: got.values?.steps };
    const state = await step("threads.getState", () => c.threads.getState(threadId));
    observed.state = { next: state.next, steps: state.values.steps };
    const runs = await step("runs.list", () => c.runs.list(threadId));
    observed.runs = runs.map((r) => r.status);
    const found = await step("threads.search", () => c.threads.search({ metadata: { mark } }));
    observed.found = found.map((t) => t.thread_id === threadId);
  },

  /** What the useStream hook does with fetchStateHistory: read the history, stream a run
   * (resumable, subgraphs), read the history again, stream the next from the head's
   * checkpoint, read it again. */
  async stream_history() {
    const c = client();
    const threadId = (await step("threads.create", () => c.threads.create())).thread_id;
    const before = await step("history.empty", () => c.threads.getHistory(threadId, { limit: 10 }));
    observed.history_before = before.length;
    const options = {
      streamMode: ["values", "messages-tuple", "updates"],
      streamSubgraphs: true,
      streamResumable: true,
      onDisconnect: "continue",
    };
    const first = await step("runs.stream.first", () =>
      collect(c.runs.stream(threadId, AGENT, { input: {}, ...options })),
    );
    observed.first_event = first[0]?.event;
    observed.events = [...new Set(first.map((part) => part.event))].sort();
    observed.first_steps = lastValues(first)?.steps;
    const history = await step("history.first", () => c.threads.getHistory(threadId, { limit: 10 }));
    observed.history_first = {
      length: history.length,
      chained: chained(history),
      head_next: history[0]?.next,
      head_steps: history[0]?.values?.steps,
      sources: history.map((state) => state.metadata?.source),
    };
    const checkpoint = { ...history[0].checkpoint };
    delete checkpoint.thread_id; // as the hook sends it
    const second = await step("runs.stream.checkpoint", () =>
      collect(c.runs.stream(threadId, AGENT, { input: {}, checkpoint, ...options })),
    );
    observed.second_steps = lastValues(second)?.steps;
    const after = await step("history.second", () => c.threads.getHistory(threadId, { limit: 10 }));
    observed.history_second = {
      length: after.length,
      chained: chained(after),
      head_steps: after[0]?.values?.steps,
      continues_first: ids(after).includes(history[0].checkpoint.checkpoint_id),
    };
  },

  /** The thread's history: pages, `before`, a metadata filter, the state at a checkpoint. */
  async history() {
    const c = client();
    const threadId = (await step("threads.create", () => c.threads.create())).thread_id;
    await step("runs.wait.first", () => c.runs.wait(threadId, AGENT, { input: {} }));
    await step("runs.wait.second", () => c.runs.wait(threadId, AGENT, { input: {} }));
    const all = await step("history.all", () => c.threads.getHistory(threadId, { limit: 100 }));
    observed.all = {
      length: all.length,
      chained: chained(all),
      steps: all.map((state) => state.metadata?.step),
      sources: all.map((state) => state.metadata?.source),
      head_steps: all[0]?.values?.steps,
      nexts: all.map((state) => state.next),
    };
    const page = await step("history.limit", () => c.threads.getHistory(threadId, { limit: 3 }));
    observed.page_is_newest = JSON.stringify(ids(page)) === JSON.stringify(ids(all).slice(0, 3));
    const before = await step("history.before", () =>
      // `before` is a config, as the client's type says (Config) and the reference reads it
      c.threads.getHistory(threadId, {
        limit: 2,
        before: { configurable: { checkpoint_id: all[2].checkpoint.checkpoint_id } },
      }),
    );
    observed.before_is_older = JSON.stringify(ids(before)) === JSON.stringify(ids(all).slice(3, 5));
    const inputs = await step("history.metadata", () =>
      c.threads.getHistory(threadId, { limit: 100, metadata: { source: "input" } }),
    );
    observed.input_checkpoints = inputs.map((state) => state.metadata?.source);
    const target = all.find((state) => state.next?.[0] === "review");
    const at = await step("state.at_checkpoint", () =>
      c.threads.getState(threadId, target.checkpoint.checkpoint_id),
    );
    observed.at_checkpoint = {
      same: at.checkpoint?.checkpoint_id === target.checkpoint.checkpoint_id,
      next: at.next,
      steps: at.values?.steps,
    };
  },

  /** update_state on a graph stopped at interrupt(), then resume it; an update while a run
   * is in flight is refused. */
  async update_state() {
    const c = client();
    let threadId = (await step("threads.create", () => c.threads.create())).thread_id;
    const stopped = await step("runs.wait.ask", () =>
      c.runs.wait(threadId, AGENT, { input: { ask: true } }),
    );
    observed.interrupt = (stopped.__interrupt__ ?? []).map((i) => i.value);
    const state = await step("threads.getState", () => c.threads.getState(threadId));
    observed.interrupted = { next: state.next, steps: state.values.steps };
    const updated = await step("threads.updateState", () =>
      c.threads.updateState(threadId, { values: { steps: ["edited"] } }),
    );
    observed.update_has_checkpoint = typeof updated?.checkpoint?.checkpoint_id === "string";
    const after = await step("threads.getState.updated", () => c.threads.getState(threadId));
    observed.updated = {
      next: after.next,
      steps: after.values.steps,
      source: after.metadata?.source,
      head: after.checkpoint?.checkpoint_id === updated?.checkpoint?.checkpoint_id,
    };
    const resumed = await step("runs.wait.resume", () =>
      c.runs.wait(threadId, AGENT, { command: { resume: "yes" } }),
    );
    observed.resumed = { steps: resumed.steps, answer: resumed.answer };
    observed.thread_status = (await step("threads.get", () => c.threads.get(threadId))).status;

    threadId = (await step("threads.create.busy", () => c.threads.create())).thread_id;
    const run = await step("runs.create.busy", () =>
      c.runs.create(threadId, AGENT, { input: { seconds: 2 } }),
    );
    await step("runs.get.running", () => untilRunning(c, threadId, run.run_id));
    observed.update_while_running = await step("threads.updateState.busy", () =>
      statusOf(c.threads.updateState(threadId, { values: { steps: ["late"] } })),
    );
    const joined = await step("runs.join.busy", () => c.runs.join(threadId, run.run_id));
    observed.busy_steps = joined.steps;
  },

  /** Forks from earlier checkpoints: a run from the end of the first run (`checkpoint_id`),
   * a replay from a mid-run checkpoint (`checkpoint`, as the hook sends it), and an edit of
   * an earlier state (`updateState` with `checkpointId`) resumed from there. */
  async fork() {
    const c = client();
    const threadId = (await step("threads.create", () => c.threads.create())).thread_id;
    await step("runs.wait.first", () => c.runs.wait(threadId, AGENT, { input: {} }));
    await step("runs.wait.second", () => c.runs.wait(threadId, AGENT, { input: {} }));
    const history = await step("history", () => c.threads.getHistory(threadId, { limit: 100 }));
    const oldHead = history[0].checkpoint.checkpoint_id;
    const endOfFirst = history.find(
      (state) => state.values?.steps?.length === 3 && state.next.length === 0,
    );
    const afterWork = history.findLast((state) => state.next?.[0] === "review");
    const forked = await step("runs.wait.checkpoint_id", () =>
      c.runs.wait(threadId, AGENT, { input: {}, checkpointId: endOfFirst.checkpoint.checkpoint_id }),
    );
    observed.from_end_of_first = forked.steps;
    const state = await step("threads.getState", () => c.threads.getState(threadId));
    observed.head_steps = state.values.steps;
    const after = await step("history.after", () => c.threads.getHistory(threadId, { limit: 100 }));
    observed.branches_kept = {
      old_head: ids(after).includes(oldHead),
      grew_by: after.length - history.length,
    };
    // The new head's line of parents reaches the end of the first run without the second.
    const byId = new Map(after.map((s) => [s.checkpoint.checkpoint_id, s]));
    const line = [];
    for (let s = after[0]; s; s = byId.get(s.parent_checkpoint?.checkpoint_id)) {
      line.push(s.checkpoint.checkpoint_id);
    }
    observed.line = {
      through_end_of_first: line.includes(endOfFirst.checkpoint.checkpoint_id),
      through_old_head: line.includes(oldHead),
    };

    const replay = await step("runs.stream.checkpoint", () =>
      collect(
        c.runs.stream(threadId, AGENT, {
          input: null,
          checkpoint: { checkpoint_id: afterWork.checkpoint.checkpoint_id, checkpoint_ns: "" },
          streamMode: ["values"],
        }),
      ),
    );
    observed.replay_from_work = lastValues(replay)?.steps;

    const edit = await step("threads.updateState.checkpointId", () =>
      c.threads.updateState(threadId, {
        values: { steps: ["edited"] },
        checkpointId: afterWork.checkpoint.checkpoint_id,
      }),
    );
    const edited = await step("state.edited", () =>
      c.threads.getState(threadId, edit.checkpoint.checkpoint_id),
    );
    observed.edited = {
      parent_is_source: edited.parent_checkpoint?.checkpoint_id === afterWork.checkpoint.checkpoint_id,
      steps: edited.values.steps,
      next: edited.next,
    };
    const resumed = await step("runs.wait.edited", () =>
      c.runs.wait(threadId, AGENT, { input: null }),
    );
    observed.resumed_edit = resumed.steps;
  },

  /** POST /threads/{id}/copy: the copy has the state and history, and goes its own way. */
  async copy() {
    const c = client();
    const mark = marker();
    const threadId = (await step("threads.create", () => c.threads.create({ metadata: { mark } })))
      .thread_id;
    await step("runs.wait", () => c.runs.wait(threadId, AGENT, { input: {} }));
    const copy = await step("threads.copy", () => c.threads.copy(threadId));
    observed.copy = { new_id: copy.thread_id !== threadId, marked: copy.metadata?.mark === mark };
    const original = await step("history.original", () =>
      c.threads.getHistory(threadId, { limit: 100 }),
    );
    const copied = await step("history.copy", () =>
      c.threads.getHistory(copy.thread_id, { limit: 100 }),
    );
    const shape = (history) => history.map((s) => [s.next, s.values?.steps ?? []]);
    observed.history = {
      lengths: [original.length, copied.length],
      same_states: JSON.stringify(shape(original)) === JSON.stringify(shape(copied)),
      copy_thread_ids: [...new Set(copied.map((s) => s.checkpoint?.thread_id))].map(
        (id) => id === copy.thread_id,
      ),
    };
    await step("runs.wait.copy", () => c.runs.wait(copy.thread_id, AGENT, { input: {} }));
    const mine = await step("state.copy", () => c.threads.getState(copy.thread_id));
    const theirs = await step("state.original", () => c.threads.getState(threadId));
    observed.after_run_on_copy = [mine.values.steps.length, theirs.values.steps.length];
  },

  /** A resumable stream dropped mid-run, rejoined with Last-Event-ID: the rest of the events,
   * none twice; "-1" replays them all. */
  async reconnect() {
    const c = client();
    const threadId = (await step("threads.create", () => c.threads.create())).thread_id;
    const abort = new AbortController();
    let runId;
    const seen = [];
    await step("runs.stream.dropped", async () => {
      const parts = c.runs.stream(threadId, AGENT, {
        input: { seconds: 2 },
        streamMode: ["values", "updates", "custom"],
        streamResumable: true,
        onDisconnect: "continue",
        signal: abort.signal,
        onRunCreated: (meta) => {
          runId = meta.run_id;
        },
      });
      for await (const part of parts) {
        if (part.event === "heartbeat" || part.event === "end") continue;
        seen.push(part);
        if (part.event === "custom") break; // `work` is sleeping now: drop the connection
      }
      abort.abort();
    });
    observed.before_drop = seen.map((part) => part.event);
    observed.ids_before_drop = seen.every((part) => typeof part.id === "string" && part.id !== "");
    const lastEventId = seen.at(-1).id;
    observed.running_after_drop = (await step("runs.get", () => c.runs.get(threadId, runId))).status;
    const rest = await step("runs.joinStream.lastEventId", () =>
      collect(c.runs.joinStream(threadId, runId, { lastEventId })),
    );
    const seenIds = new Set(seen.map((part) => part.id));
    observed.rest = {
      events: rest.map((part) => part.event),
      repeated: rest.filter((part) => seenIds.has(part.id)).length,
      final_steps: lastValues(rest)?.steps,
    };
    const replay = await step("runs.joinStream.replay", () =>
      collect(c.runs.joinStream(threadId, runId, { lastEventId: "-1" })),
    );
    observed.replay_is_everything =
      JSON.stringify(replay.map((part) => part.id)) ===
      JSON.stringify([...seen, ...rest].map((part) => part.id));
    observed.run_status = (await step("runs.get.after", () => c.runs.get(threadId, runId))).status;
  },

  /** GET /threads/{id}/stream: a thread's stream shows the runs started on it. */
  async thread_stream() {
    let connected;
    const ready = new Promise((resolve) => {
      connected = resolve;
    });
    const recording = async (input, init) => {
      const response = await fetch(input, init);
      if (String(input).includes("/stream") && response.ok) connected();
      return response;
    };
    const c = client({ callerOptions: { fetch: recording } });
    const threadId = (await step("threads.create", () => c.threads.create())).thread_id;
    const abort = new AbortController();
    const events = [];
    const reading = named("threads.joinStream", async () => {
      for await (const part of c.threads.joinStream(threadId, {
        signal: abort.signal,
        streamMode: ["values"],
      })) {
        if (part.event === "heartbeat" || part.event === "end") continue;
        events.push(part);
        if (part.event === "values" && part.data?.steps?.length === 3) return true;
      }
      return false; // the stream ended before the run did
    });
    await Promise.race([ready, reading]);
    await step("runs.create", () => c.runs.create(threadId, AGENT, { input: {} }));
    const finished = await Promise.race([reading, sleep(15_000, { unref: true }).then(() => false)]);
    abort.abort();
    observed.saw_the_run_end = finished;
    observed.events = [...new Set(events.map((part) => part.event))].sort();
    observed.final_steps = lastValues(events)?.steps;
  },

  /** POST /threads/count, by metadata and by status; PATCH /threads/{id} changes what counts. */
  async count() {
    const c = client();
    const mark = marker();
    const threads = [];
    for (let i = 0; i < 3; i++) {
      threads.push((await step("threads.create", () => c.threads.create({ metadata: { mark } }))).thread_id);
    }
    observed.all = await step("threads.count", () => c.threads.count({ metadata: { mark } }));
    await step("runs.wait.ask", () => c.runs.wait(threads[0], AGENT, { input: { ask: true } }));
    observed.interrupted = await step("threads.count.status", () =>
      c.threads.count({ metadata: { mark }, status: "interrupted" }),
    );
    observed.idle = await step("threads.count.idle", () =>
      c.threads.count({ metadata: { mark }, status: "idle" }),
    );
    const patched = await step("threads.update", () =>
      c.threads.update(threads[1], { metadata: { tag: "b" } }),
    );
    observed.patched = { mark: patched.metadata?.mark === mark, tag: patched.metadata?.tag };
    observed.tagged = await step("threads.count.tagged", () =>
      c.threads.count({ metadata: { mark, tag: "b" } }),
    );
  },

  /** POST /threads/prune (strategy delete): the named threads are gone, the others stay. */
  async prune() {
    const c = client();
    const mark = marker();
    const threads = [];
    for (let i = 0; i < 3; i++) {
      threads.push((await step("threads.create", () => c.threads.create({ metadata: { mark } }))).thread_id);
    }
    await step("runs.wait", () => c.runs.wait(threads[0], AGENT, { input: {} }));
    await step("runs.wait", () => c.runs.wait(threads[1], AGENT, { input: {} }));
    observed.pruned = await step("threads.prune", () => c.threads.prune([threads[0], threads[1]]));
    observed.after = [];
    for (const threadId of threads) {
      observed.after.push(await step("threads.get", () => statusOf(c.threads.get(threadId))));
    }
    observed.left = await step("threads.count", () => c.threads.count({ metadata: { mark } }));
  },

  /** `ttl` on create (minutes, as the API says): accepted, and with an ARGUMENT of N seconds,
   * the thread is swept within N seconds while a thread without a ttl stays. */
  async ttl() {
    const c = client();
    const wait = Number(argument ?? 0);
    const swept = await step("threads.create.ttl", () =>
      c.threads.create({ ttl: { ttl: 0.02, strategy: "delete" } }),
    );
    const kept = await step("threads.create", () => c.threads.create());
    observed.created = (await step("threads.get", () => statusOf(c.threads.get(swept.thread_id))));
    if (!wait) return;
    const started = Date.now();
    let status = "ok";
    while (status === "ok" && Date.now() - started < wait * 1000) {
      await sleep(250);
      status = await step("threads.get.swept", () => statusOf(c.threads.get(swept.thread_id)));
    }
    observed.swept = status;
    observed.swept_within_s = Math.ceil((Date.now() - started) / 1000);
    observed.kept = await step("threads.get.kept", () => statusOf(c.threads.get(kept.thread_id)));
  },

  /** The crons client: create (stateless) and createForThread, search, count, update,
   * delete, on schedules that do not fire during the test (the fires: test_api_crons.py). */
  async crons() {
    const c = client();
    const mark = marker();
    const thread = await step("threads.create", () => c.threads.create());
    const stateless = await step("crons.create", () =>
      c.crons.create(AGENT, {
        schedule: "0 0 1 1 *",
        input: {},
        metadata: { mark },
        onRunCompleted: "keep",
      }),
    );
    const next = new Date(stateless.next_run_date);
    observed.stateless = {
      thread_id: stateless.thread_id,
      on_run_completed: stateless.on_run_completed,
      enabled: stateless.enabled,
      schedule: stateless.schedule,
      next_is_new_year: next.getUTCMonth() === 0 && next.getUTCDate() === 1,
      marked: stateless.metadata?.mark === mark,
    };
    const threaded = await step("crons.createForThread", () =>
      c.crons.createForThread(thread.thread_id, AGENT, {
        schedule: "30 9 * * 1",
        input: {},
        metadata: { mark },
        timezone: "Europe/Paris",
      }),
    );
    observed.threaded = {
      same_thread: threaded.thread_id === thread.thread_id,
      on_run_completed: threaded.on_run_completed,
      timezone: threaded.timezone,
    };
    observed.count = await step("crons.count", () => c.crons.count({ metadata: { mark } }));
    observed.of_thread = await step("crons.search.thread", async () =>
      (await c.crons.search({ threadId: thread.thread_id })).map((x) => x.cron_id === threaded.cron_id),
    );
    const updated = await step("crons.update", () =>
      c.crons.update(stateless.cron_id, { enabled: false, schedule: "0 0 2 1 *" }),
    );
    observed.updated = { enabled: updated.enabled, schedule: updated.schedule };
    observed.disabled = await step("crons.search.enabled", async () =>
      (await c.crons.search({ metadata: { mark }, enabled: false })).map(
        (x) => x.cron_id === stateless.cron_id,
      ),
    );
    await step("crons.delete", () => c.crons.delete(stateless.cron_id));
    await step("crons.delete", () => c.crons.delete(threaded.cron_id));
    observed.after_delete = await step("crons.count", () => c.crons.count({ metadata: { mark } }));
    observed.delete_again = await step("crons.delete.again", () =>
      statusOf(c.crons.delete(stateless.cron_id)),
    );
    observed.bad_schedule = await step("crons.create.bad", () =>
      statusOf(c.crons.create(AGENT, { schedule: "every minute" })),
    );
  },
  /** The Store (tests/store_graphs.py `memory`): a preference remembered in one thread is
   * recalled in another, and read, searched, listed and deleted through client.store. */
  async memory() {
    const c = client();
    const mark = marker();
    const first = await step("threads.create", () => c.threads.create());
    const remembered = await step("runs.wait.remember", () =>
      c.runs.wait(first.thread_id, "memory", { input: { remember: "violet" } }),
    );
    const second = await step("threads.create", () => c.threads.create());
    const recalled = await step("runs.wait.recall", () =>
      c.runs.wait(second.thread_id, "memory", { input: {} }),
    );
    observed.remembered = { color: remembered.color, confirmed: remembered.confirmed };
    observed.recalled = { color: recalled.color, confirmed: recalled.confirmed };
    const item = await step("store.getItem", () => c.store.getItem(["preferences"], "color"));
    observed.item = { namespace: item?.namespace, value: item?.value };
    await step("store.putItem", () => c.store.putItem(["js", mark], "note", { text: "hi" }));
    const found = await step("store.searchItems", () =>
      c.store.searchItems(["js", mark], { filter: { text: "hi" } }),
    );
    observed.found = found.items.map((i) => [i.namespace.length, i.key, i.value]);
    const listed = await step("store.listNamespaces", () =>
      c.store.listNamespaces({ prefix: ["js", mark] }),
    );
    observed.listed = listed.namespaces.length;
    await step("store.deleteItem", () => c.store.deleteItem(["js", mark], "note"));
    observed.deleted = await step("store.getItem.deleted", () => c.store.getItem(["js", mark], "note"));
  },
};

try {
  if (!(name in scenarios)) throw new Error(`no scenario ${name}: ${Object.keys(scenarios)}`);
  await scenarios[name]();
  console.log(JSON.stringify(observed));
} catch (error) {
  observed.failed_at = error?.step ?? current;
  observed.error = String(error?.message ?? error).slice(0, 2000);
  console.log(JSON.stringify(observed));
  process.exitCode = 1;
}
