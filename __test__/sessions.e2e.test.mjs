// Sessions through OpenCode's SQLite database, end to end with the real OpenCode 1.18.33 and the
// `oc-sync` CLI (no plugin): machine A and machine B (each its own HOME) share a local-folder remote;
// the project is a git repo made on A and cloned on B to a different path (same root commit, so the
// same OpenCode project id). The tests build on each other and run in order.
//
// Run: node --test --test-concurrency=1 __test__/sessions.e2e.test.mjs   (needs `npm run build:debug`)
import { test, before, after } from "node:test"
import assert from "node:assert/strict"
import fs from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { startFakeModel, createMachine, makeTempRoot, resolveOpencodeBin, toolThenText, startServe, readOcSyncLog } from "./harness/index.mjs"

const CLI = fileURLToPath(new URL("../bin/oc-sync.js", import.meta.url))
const RUN_MS = 120000 // healthy opencode runs take 3-10 s; this only catches hangs
const SYNC_MS = 120000

let tmp, fake, remote, a, b, pid
const timings = []
const S = {} // state shared by the tests (they run in order)

before(async () => {
  resolveOpencodeBin()
  if (!fs.existsSync(path.join(path.dirname(CLI), "..", "index.js"))) throw new Error("index.js missing: run `npm run build:debug`")
  tmp = makeTempRoot("oc-sync-sessions-")
  fake = await startFakeModel()
  remote = path.join(tmp.root, "remote")
  a = await createMachine("A", { root: tmp.root, modelUrl: fake.url })
  b = await createMachine("B", { root: tmp.root, modelUrl: fake.url })
  a.project = await a.projectDir("demo")
  b.project = await b.cloneProject(a.project, "elsewhere/demo-b")
  assert.notEqual(a.project, b.project)
  pid = await a.rootCommit(a.project)
  assert.equal(await b.rootCommit(b.project), pid, "the clone must have the same root commit")
})

after(async () => {
  if (timings.length) console.log(`# timings (ms):\n${timings.map(([k, v]) => `#   ${k}: ${v}`).join("\n")}`)
  await fake?.close()
  tmp?.cleanup()
})

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

const ocSyncLog = (m) => readOcSyncLog(m)

/** `oc-sync sync --json` on machine m → the parsed report. Fails with the output and log tail. */
async function ocSync(m, label, env = {}) {
  const r = await m.run(process.execPath, [CLI, "sync", "--json"], {
    cwd: m.project,
    env: { OC_SYNC_REMOTE: remote, ...env },
    timeoutMs: SYNC_MS,
  })
  timings.push([`sync ${label}`, r.ms])
  const why = `oc-sync sync on ${m.name} (${label}) → code ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}\noc-sync log tail:\n${ocSyncLog(m)}`
  assert.equal(r.timedOut, false, why)
  assert.equal(r.code, 0, why)
  let rep
  try {
    rep = JSON.parse(r.stdout)
  } catch {
    assert.fail(`sync --json printed no JSON. ${why}`)
  }
  assert.equal(rep.ok, true, why)
  rep.stderr = r.stderr
  rep.why = why
  return rep
}

const sessionKeys = (keys, sid) => (keys ?? []).filter((k) => k.includes(sid))

/** `opencode run` in the machine's project (or `cwd`), must exit 0. */
async function ocRun(m, args, label, { cwd = m.project } = {}) {
  const r = await m.opencode(["run", ...args], { cwd, timeoutMs: RUN_MS })
  timings.push([`opencode run ${label}`, r.ms])
  const why = `opencode run ${args.join(" ")} on ${m.name} → code ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr.slice(-4000)}`
  assert.equal(r.timedOut, false, why)
  assert.equal(r.code, 0, why)
  return r
}

async function sessionList(m, cwd = m.project) {
  const r = await m.opencode(["session", "list", "--format", "json"], { cwd, timeoutMs: RUN_MS })
  assert.equal(r.code, 0, `session list on ${m.name}: ${r.stderr}`)
  const out = r.stdout.trim()
  return out ? JSON.parse(out) : []
}

async function ocExport(m, sid, cwd = m.project) {
  const r = await m.opencode(["export", sid], { cwd, timeoutMs: RUN_MS })
  const why = `opencode export ${sid} on ${m.name} → code ${r.code}\nstdout:\n${r.stdout.slice(0, 2000)}\nstderr:\n${r.stderr.slice(-4000)}`
  assert.equal(r.code, 0, why)
  try {
    return JSON.parse(r.stdout)
  } catch {
    assert.fail(`export printed no JSON. ${why}`)
  }
}

async function messageCount(m, sid) {
  const rows = await m.db(`SELECT count(*) AS n FROM message WHERE session_id = '${sid}'`, { cwd: m.project })
  return rows[0].n
}

/** JSON with every occurrence of `from` replaced by `to`. */
function remap(obj, from, to) {
  return JSON.parse(JSON.stringify(obj).replaceAll(from, to))
}

/** Paths (a.b[3].c) where two JSON values differ, at most `max`. */
function diffPaths(x, y, at = "", out = [], max = 30) {
  if (out.length >= max) return out
  if (x === y) return out
  if (typeof x !== "object" || typeof y !== "object" || x === null || y === null || Array.isArray(x) !== Array.isArray(y)) {
    out.push(`${at || "(root)"}: ${JSON.stringify(x)?.slice(0, 200)} ≠ ${JSON.stringify(y)?.slice(0, 200)}`)
    return out
  }
  const keys = new Set([...Object.keys(x), ...Object.keys(y)])
  for (const k of keys) diffPaths(x[k], y[k], Array.isArray(x) ? `${at}[${k}]` : `${at}.${k}`, out, max)
  return out
}

const messageIds = (exp) => exp.messages.map((msg) => msg.info.id).sort()
const partIds = (exp) => exp.messages.flatMap((msg) => msg.parts.map((p) => p.id)).sort()
const union = (...lists) => [...new Set(lists.flat())].sort()

// ---------------------------------------------------------------------------------------------
// 1
// ---------------------------------------------------------------------------------------------

test("a session started on A is listed, exported and continued on B", async () => {
  // Run 1 on A: the model calls `read` and `todowrite`, then answers with text.
  fake.setScript(
    toolThenText(
      [
        { name: "read", args: { filePath: path.join(a.project, "README.md") } },
        {
          name: "todowrite",
          args: {
            todos: [
              { content: "first todo", status: "pending", priority: "high" },
              { content: "second todo", status: "completed", priority: "low" },
            ],
          },
        },
      ],
      "Read the README.",
    ),
  )
  await ocRun(a, ["hello"], "A#1 (tool calls)")
  const listA = await sessionList(a)
  assert.equal(listA.length, 1, JSON.stringify(listA))
  const sid = listA[0].id
  S.sid = sid
  assert.equal(listA[0].directory, a.project)

  // Run 2 on A continues it: plain text.
  fake.setScript(() => "second answer from A")
  await ocRun(a, ["-s", sid, "again"], "A#2 (-s)")
  const exportA = await ocExport(a, sid)
  assert.equal(exportA.info.id, sid)
  assert.equal(exportA.messages.length, 5, `user, assistant(tool-calls), assistant(text), user, assistant: ${messageIds(exportA)}`)
  assert.ok(
    exportA.messages.some((msg) => msg.parts.some((p) => p.type === "tool" && p.tool === "read" && p.state?.status === "completed")),
    "A's session holds a completed read tool call",
  )
  const todosA = await a.db(`SELECT content, status, priority, position FROM todo WHERE session_id = '${sid}' ORDER BY position`, { cwd: a.project })
  assert.equal(todosA.length, 2, JSON.stringify(todosA))

  // B has opened its clone once (OpenCode's database exists, the project is known there).
  assert.deepEqual(await sessionList(b), [])

  // Items: the session row, its todo list, and one item per message (with its parts).
  const itemKeys = [`sessions/${pid}/${sid}.json`, `todos/${pid}/${sid}.json`, ...messageIds(exportA).map((id) => `messages/${pid}/${sid}/${id}.json`)]
  const repA = await ocSync(a, "A push")
  for (const key of itemKeys) assert.ok(repA.pushed?.includes(key), `A pushed ${key}\n${repA.why}`)
  const repB = await ocSync(b, "B pull")
  for (const key of itemKeys) assert.ok(repB.pulled?.includes(key), `B pulled ${key}\n${repB.why}`)

  // Listed on B, with B's directory.
  const listB = await sessionList(b)
  const onB = listB.find((s) => s.id === sid)
  assert.ok(onB, `B lists ${sid}: ${JSON.stringify(listB)}`)
  assert.equal(onB.directory, b.project, "the session's directory is B's clone")
  assert.equal(onB.projectId, pid)
  assert.equal(onB.title, listA[0].title)

  // Exported on B: equal to A's export once A's path is read as B's.
  const exportB = await ocExport(b, sid)
  assert.equal(exportB.info.directory, b.project)
  const want = remap(exportA, a.project, b.project)
  const got = remap(exportB, a.project, b.project) // paths inside parts may stay A's (historical record)
  assert.deepEqual(got, want, `B's export differs from A's:\n${diffPaths(got, want).join("\n")}`)
  const todosB = await b.db(`SELECT content, status, priority, position FROM todo WHERE session_id = '${sid}' ORDER BY position`, { cwd: b.project })
  assert.deepEqual(todosB, todosA, "todos arrived on B")

  // Continued on B.
  fake.setScript(() => "answer on B")
  const before = exportB.messages.length
  const chatsBefore = fake.chatRequests().length
  await ocRun(b, ["-s", sid, "continue"], "B#1 (-s)")
  const lastChat = fake.chatRequests().slice(chatsBefore)[0]
  assert.ok(lastChat, "B's continuation reached the model")
  const sentUserTexts = JSON.stringify(lastChat.messages)
  assert.ok(sentUserTexts.includes("hello") && sentUserTexts.includes("again"), "B sent A's history to the model")
  const exportB2 = await ocExport(b, sid)
  assert.equal(exportB2.messages.length, before + 2, "B's continuation appended a user and an assistant message")
  assert.equal(exportB2.info.directory, b.project)
  const newOnB = messageIds(exportB2).filter((id) => !messageIds(exportB).includes(id))
  assert.equal(newOnB.length, 2)
  const bAssistant = exportB2.messages.find((msg) => newOnB.includes(msg.info.id) && msg.info.role === "assistant")
  assert.ok(bAssistant?.parts.some((p) => p.type === "text" && p.text === "answer on B"), JSON.stringify(bAssistant))

  // Back to A.
  const repB2 = await ocSync(b, "B push")
  // One item per message (messages/<project>/<session>/<message>.json): B pushed its two new ones.
  const ofSession = (keys, s) => (keys ?? []).filter((k) => k.startsWith(`messages/${pid}/${s}/`))
  for (const id of newOnB) assert.ok(ofSession(repB2.pushed, sid).includes(`messages/${pid}/${sid}/${id}.json`), `B pushed its message ${id}\n${repB2.why}`)
  const repA2 = await ocSync(a, "A pull")
  assert.ok(
    newOnB.every((id) => ofSession([...(repA2.pulled ?? []), ...(repA2.merged ?? [])], sid).includes(`messages/${pid}/${sid}/${id}.json`)),
    `A pulled the messages\n${repA2.why}`,
  )
  assert.equal(await messageCount(a, sid), before + 2, "A's database has B's two new messages")
  const exportA2 = await ocExport(a, sid)
  assert.deepEqual(messageIds(exportA2), messageIds(exportB2))
  assert.deepEqual(partIds(exportA2), partIds(exportB2))
  assert.equal(exportA2.info.directory, a.project, "A's session keeps A's directory after the round trip")
  const listA2 = await sessionList(a)
  assert.equal(listA2.find((s) => s.id === sid)?.directory, a.project)
  S.exportA = exportA2
})

// ---------------------------------------------------------------------------------------------
// 2
// ---------------------------------------------------------------------------------------------

test("both continuations are kept", async () => {
  const sid = S.sid
  assert.ok(sid && S.exportA, "needs the session of test 1 (it failed)")
  const base = messageIds(S.exportA)

  // Offline: A (with a tool call) and B each continue the session.
  fake.setScript(toolThenText({ name: "bash", args: { command: "echo from-A", description: "echo" } }, "A continued"))
  await ocRun(a, ["-s", sid, "fromA"], "A offline (-s, tool call)")
  fake.setScript(() => "B continued")
  await ocRun(b, ["-s", sid, "fromB"], "B offline (-s)")
  const offA = await ocExport(a, sid)
  const offB = await ocExport(b, sid)
  const onlyA = messageIds(offA).filter((id) => !base.includes(id))
  const onlyB = messageIds(offB).filter((id) => !base.includes(id))
  assert.equal(onlyA.length, 3, "A added user + assistant(tool-calls) + assistant(text)")
  assert.equal(onlyB.length, 2, "B added user + assistant")
  const allMsgs = union(messageIds(offA), messageIds(offB))
  const allParts = union(partIds(offA), partIds(offB))

  await ocSync(a, "A (offline work)")
  await ocSync(b, "B (offline work)")
  await ocSync(a, "A (settle)")

  for (const m of [a, b]) {
    const exp = await ocExport(m, sid)
    assert.deepEqual(messageIds(exp), allMsgs, `${m.name} has every message of both continuations`)
    assert.deepEqual(partIds(exp), allParts, `${m.name} has every part of both continuations`)
    assert.equal(exp.info.directory, m.project, `${m.name}'s directory is its own`)
    assert.equal(await messageCount(m, sid), allMsgs.length)
    // Every assistant's parent is there.
    const ids = new Set(messageIds(exp))
    for (const msg of exp.messages) if (msg.info.parentID) assert.ok(ids.has(msg.info.parentID), `${m.name}: parent of ${msg.info.id}`)
  }
  // The same content on both (modulo the project path).
  const ea = remap(await ocExport(a, sid), a.project, b.project)
  const eb = remap(await ocExport(b, sid), a.project, b.project)
  assert.deepEqual(eb.messages, ea.messages, `message content differs:\n${diffPaths(eb.messages, ea.messages).join("\n")}`)

  S.merged = true

  // Both can still continue.
  fake.setScript(() => "after merge")
  await ocRun(a, ["-s", sid, "afterA"], "A after merge (-s)")
  await ocRun(b, ["-s", sid, "afterB"], "B after merge (-s)")
})

// After a merge of two continuations the machine that merged pushes the session row once more: the
// merged row's cost/token totals are recomputed from the merged messages when those are written
// (README, "Sessions"). One more exchange settles everything.
test("after merging two continuations, the syncs settle (no item moves after one more exchange)", async () => {
  const sid = S.sid
  assert.ok(S.merged, "needs the merged session of test 2 (it failed)")
  // Merge the two "after merge" continuations the same way: A, B, A, then one more exchange.
  await ocSync(a, "A (after-merge runs)")
  await ocSync(b, "B (after-merge runs)")
  await ocSync(a, "A (settle)")
  await ocSync(b, "B (settle totals)")
  await ocSync(a, "A (settle totals)")
  const moved = []
  for (const [m, label] of [[b, "B (settled?)"], [a, "A (settled?)"]]) {
    const rep = await ocSync(m, label)
    for (const k of ["pushed", "pulled", "merged"]) for (const key of sessionKeys(rep[k], sid)) moved.push(`${label} ${k} ${key}`)
  }
  const ea = await ocExport(a, sid)
  const eb = await ocExport(b, sid)
  assert.deepEqual(messageIds(ea), messageIds(eb))
  assert.deepEqual(
    moved,
    [],
    "a session item still moved after the merge and one more exchange",
  )
})

// ---------------------------------------------------------------------------------------------
// 3 (opencode serve on B holds the database while oc-sync writes)
// ---------------------------------------------------------------------------------------------

test("writing while OpenCode holds the database", async () => {
  // Bring both into step first (test 2 left one continuation on each side).
  await ocSync(a, "A pre")
  await ocSync(b, "B pre")
  await ocSync(a, "A pre 2")

  const serve = await startServe(b, { cwd: b.project })
  timings.push(["serve startup on B", serve.startupMs])
  try {
    const q = `?directory=${encodeURIComponent(b.project)}`
    const listBefore = await (await fetch(`${serve.url}/session${q}`)).json()
    assert.ok(Array.isArray(listBefore), JSON.stringify(listBefore).slice(0, 500))

    // A new session on A.
    const known = new Set((await sessionList(a)).map((s) => s.id))
    fake.setScript(() => "third session")
    await ocRun(a, ["brandnew"], "A new session")
    const fresh = (await sessionList(a)).filter((s) => !known.has(s.id))
    assert.equal(fresh.length, 1, JSON.stringify(fresh))
    const sid3 = fresh[0].id
    const countA = await messageCount(a, sid3)

    const repA = await ocSync(a, "A push (serve on B)")
    assert.ok(repA.pushed?.includes(`sessions/${pid}/${sid3}.json`), repA.why)
    const repB = await ocSync(b, "B pull while serve runs")
    assert.ok(repB.pulled?.includes(`sessions/${pid}/${sid3}.json`), repB.why)
    assert.equal((repB.pulled ?? []).filter((k) => k.startsWith(`messages/${pid}/${sid3}/`)).length, countA, repB.why)

    // The running server sees it (it reads SQLite on every request).
    const res = await fetch(`${serve.url}/session${q}`)
    assert.equal(res.status, 200)
    const list = await res.json()
    const row = list.find((s) => s.id === sid3)
    assert.ok(row, `GET /session lists ${sid3}: ${JSON.stringify(list.map((s) => s.id))}`)
    assert.equal(row.directory, b.project)
    const msgs = await (await fetch(`${serve.url}/session/${sid3}/message${q}`)).json()
    assert.equal(msgs.length, countA, "GET /session/:id/message returns A's messages")

    // The server can continue the pulled session, and a sync during/after that still works.
    fake.setScript(() => ({ text: "via serve", delayMs: 1000 }))
    const post = fetch(`${serve.url}/session/${sid3}/message${q}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ parts: [{ type: "text", text: "continue via serve" }] }),
      signal: AbortSignal.timeout(RUN_MS),
    })
    const repMid = await ocSync(b, "B while serve answers")
    const posted = await post
    const postedText = await posted.text()
    assert.equal(posted.status, 200, postedText)
    const msgs2 = await (await fetch(`${serve.url}/session/${sid3}/message${q}`)).json()
    assert.equal(msgs2.length, countA + 2)
    assert.ok(repMid.ok)
    const repB2 = await ocSync(b, "B push serve's messages")
    assert.ok(
      [...(repB2.pushed ?? []), ...(repMid.pushed ?? [])].some((k) => k.startsWith(`messages/${pid}/${sid3}/`)),
      `B pushed serve's messages\n${repB2.why}`,
    )
    await ocSync(a, "A pull serve's messages")
    assert.equal(await messageCount(a, sid3), countA + 2, "A got the messages written through B's server")
  } finally {
    const st = await serve.stop()
    timings.push(["serve stopped", JSON.stringify(st)])
  }
})

// ---------------------------------------------------------------------------------------------
// extra: a third machine that syncs before OpenCode ever ran there
// ---------------------------------------------------------------------------------------------

test("a machine whose OpenCode has never run gets the sessions on its first sync", async () => {
  assert.ok(S.sid, "needs the session of test 1 (it failed)")
  const c = await createMachine("C", { root: tmp.root, modelUrl: fake.url })
  c.project = await c.cloneProject(a.project, "third/demo-c")
  // PATH without any `opencode`: the files sync, the sessions wait, and the person is told why.
  const noOpencode = (process.env.PATH ?? "")
    .split(path.delimiter)
    .filter((d) => d && !fs.existsSync(path.join(d, "opencode")))
    .join(path.delimiter)
  const r0 = await ocSync(c, "C without OpenCode on PATH", { PATH: noOpencode })
  assert.match(r0.sessionsWaiting ?? "", /no `opencode` program was found on PATH/, r0.why)
  assert.equal(r0.databaseCreatedBy, null, r0.why)
  assert.deepEqual(r0.pulled.filter((k) => !k.startsWith("config/")), [], r0.why)
  assert.equal(fs.existsSync(c.opencodeDirs.db), false, "oc-sync must never create OpenCode's schema itself")
  const plain = await c.run(process.execPath, [CLI, "sync"], { cwd: c.project, env: { OC_SYNC_REMOTE: remote, PATH: noOpencode }, timeoutMs: SYNC_MS })
  assert.equal(plain.code, 0, plain.stderr)
  assert.match(plain.stdout, /sessions waiting: .*no `opencode` program was found on PATH/, plain.stdout)
  assert.doesNotMatch(plain.stdout, /already in sync/, plain.stdout)
  // With OpenCode on PATH, the first sync has OpenCode create its database, then imports.
  const binDir = path.join(tmp.root, "C-bin")
  fs.mkdirSync(binDir, { recursive: true })
  fs.symlinkSync(resolveOpencodeBin(), path.join(binDir, "opencode"))
  const r1 = await ocSync(c, "C with OpenCode on PATH", { PATH: `${binDir}${path.delimiter}${noOpencode}` })
  assert.equal(r1.databaseCreatedBy, path.join(binDir, "opencode"), r1.why)
  assert.equal(r1.sessionsWaiting, null, r1.why)
  assert.ok(r1.pulled.includes(`sessions/${pid}/${S.sid}.json`), r1.why)
  const list = await sessionList(c)
  assert.equal(list.find((s) => s.id === S.sid)?.directory, c.project, JSON.stringify(list))
  const ea = await ocExport(a, S.sid)
  const ec = await ocExport(c, S.sid)
  assert.deepEqual(messageIds(ec), messageIds(ea))
  fake.setScript(() => "on C")
  await ocRun(c, ["-s", S.sid, "fromC"], "C (-s)")
})
