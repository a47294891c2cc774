// Self-test of the e2e harness: real OpenCode, fake model, isolated machine dirs. No plugins.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import {
  startFakeModel,
  createMachine,
  makeTempRoot,
  toolThenText,
  spawnCollect,
  resolveOpencodeBin,
  DEFAULT_TEXT,
} from "./harness/index.mjs";

const STALL_MS = 30000; // a healthy run takes 3-5 s; the npm-install stall would be ~70 s

let tmp, fake, machine, project;

before(async () => {
  resolveOpencodeBin(); // throws — test fails, never skips — when OpenCode is missing
  tmp = makeTempRoot("oc-sync-harness-");
  fake = await startFakeModel();
  machine = await createMachine("alpha", { root: tmp.root, modelUrl: fake.url });
  project = await machine.projectDir("demo");
});

after(async () => {
  await fake?.close();
  tmp?.cleanup();
});

const show = (r) => `code=${r.code} signal=${r.signal} ms=${r.ms}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;

test("machine dirs are isolated and seeded", () => {
  assert.ok(machine.home.startsWith(tmp.root));
  for (const d of Object.values(machine.dirs)) assert.ok(d.startsWith(machine.home), d);
  const env = machine.env();
  assert.equal(env.HOME, machine.home);
  assert.equal(env.XDG_CONFIG_HOME, machine.dirs.config);
  assert.equal(env.OPENCODE_DISABLE_AUTOUPDATE, "1");
  assert.equal(env.USER_SECRET_THING, undefined);
  for (const f of ["opencode.json", "package.json", "package-lock.json", "node_modules"]) {
    assert.ok(fs.existsSync(path.join(machine.opencodeDirs.config, f)), f);
  }
});

let sessionId;

test("opencode run answers from the fake model without stalling", async (t) => {
  const r = await machine.opencode(["run", "hi"], { cwd: project, timeoutMs: 60000 });
  t.diagnostic(`opencode run: ${r.ms} ms`);
  assert.equal(r.code, 0, show(r));
  assert.ok(r.ms < STALL_MS, `run took ${r.ms} ms\n${show(r)}`);
  assert.match(r.stdout, new RegExp(DEFAULT_TEXT.replace(".", "\\.")));
  assert.ok(fake.requests.length >= 1, "fake model got no request");
  assert.ok(fake.chatRequests().some((b) => b.messages.at(-1)?.content === "hi"));

  const list = await machine.opencode(["session", "list", "--format", "json"], { cwd: project });
  t.diagnostic(`opencode session list: ${list.ms} ms`);
  assert.equal(list.code, 0, show(list));
  const sessions = JSON.parse(list.stdout);
  assert.equal(sessions.length, 1, list.stdout);
  sessionId = sessions[0].id;
  assert.match(sessionId, /^ses_/);
  assert.equal(sessions[0].projectId, await machine.rootCommit(project)); // project id = root commit

  // usage from the fake reached the db (tokens and cost)
  const rows = await machine.db("SELECT data FROM message");
  const assistant = rows.map((r) => JSON.parse(r.data)).find((m) => m.role === "assistant");
  assert.equal(assistant.tokens.input, 10);
  assert.ok(assistant.cost > 0);
});

test("a scripted tool call runs in OpenCode and is stored as a tool part", async (t) => {
  assert.ok(sessionId, "needs the session of the previous test");
  const target = path.join(project, "from-tool.txt");
  fake.setScript(toolThenText({ name: "write", args: { filePath: target, content: "written by the write tool\n" } }, "Wrote the file."));
  try {
    const r = await machine.opencode(["run", "-s", sessionId, "write", "the", "file"], { cwd: project });
    t.diagnostic(`opencode run -s (tool call): ${r.ms} ms`);
    assert.equal(r.code, 0, show(r));
    assert.ok(r.ms < STALL_MS, `run took ${r.ms} ms`);
    assert.match(r.stdout, /Wrote the file\./);
  } finally {
    fake.setScript(undefined);
  }
  assert.equal(fs.readFileSync(target, "utf8"), "written by the write tool\n");
  // the follow-up request carried the tool result
  assert.ok(fake.chatRequests().some((b) => b.messages.at(-1)?.role === "tool"));

  const parts = (await machine.db("SELECT session_id, data FROM part")).map((r) => ({ sid: r.session_id, ...JSON.parse(r.data) }));
  const tool = parts.find((p) => p.type === "tool");
  assert.ok(tool, `no tool part in ${JSON.stringify(parts.map((p) => p.type))}`);
  assert.equal(tool.tool, "write");
  assert.equal(tool.state.status, "completed");
  assert.equal(tool.sid, sessionId); // -s continued the same session

  const list = JSON.parse((await machine.opencode(["session", "list", "--format", "json"], { cwd: project })).stdout);
  assert.equal(list.length, 1);
});

test("same project name on two machines gives the same root commit; clone too", async () => {
  const other = await createMachine("beta", { root: tmp.root, modelUrl: fake.url });
  const p2 = await other.projectDir("demo");
  assert.notEqual(p2, project);
  assert.equal(await other.rootCommit(p2), await machine.rootCommit(project));
  const cloned = await other.cloneProject(project, "demo-clone");
  assert.equal(await other.rootCommit(cloned), await machine.rootCommit(project));
});

test("spawn timeout kills the process group and says so", async () => {
  const r = await spawnCollect("sh", ["-c", "sleep 30 & sleep 30"], { timeoutMs: 300 });
  assert.equal(r.timedOut, true);
  assert.equal(r.signal, "SIGKILL");
  assert.match(r.stderr, /timed out after 300 ms/);
  assert.ok(r.ms < 5000);
});
