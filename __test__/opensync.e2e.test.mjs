// The OpenSync export end to end, with the real OpenCode 1.18.33 and the project's fake OpenSync
// dashboard (the fake-opensync binary): the `oc-sync opensync …` CLI exports a real session (tool
// call included), the plugin exports after `opencode run` on its own when credentials exist, and a
// wrong key is explained without storing anything.
//
// Run: node --test --test-concurrency=1 __test__/opensync.e2e.test.mjs   (needs `npm run build:debug`)
import { test, before, after } from "node:test"
import assert from "node:assert/strict"
import fs from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"
import {
  startFakeModel,
  startFakeOpensync,
  resolveFakeOpensyncBin,
  createMachine,
  makeTempRoot,
  resolveOpencodeBin,
  packPlugin,
  toolThenText,
  DEFAULT_TEXT,
  readOcSyncLog,
} from "./harness/index.mjs"

const CLI = fileURLToPath(new URL("../bin/oc-sync.js", import.meta.url))
const RUN_MS = 120000 // healthy opencode runs take 3-10 s; this only catches hangs
const CLI_MS = 60000

let tmp, fake, os_, pkg
const timings = []

before(
  async () => {
    resolveOpencodeBin() // fails (never skips) when OpenCode is missing
    resolveFakeOpensyncBin() // builds it with cargo when missing; fails (never skips) when it cannot
    if (!fs.existsSync(path.join(path.dirname(CLI), "..", "index.js"))) throw new Error("index.js missing: run `npm run build:debug`")
    tmp = makeTempRoot("oc-sync-opensync-")
    fake = await startFakeModel()
    os_ = await startFakeOpensync()
    assert.match(os_.key, /^osk_/)
  },
  { timeout: 15 * 60 * 1000 }, // a cold `cargo build -p fake-opensync` may take minutes
)

after(async () => {
  if (timings.length) console.log(`# timings (ms):\n${timings.map(([k, v]) => `#   ${k}: ${v}`).join("\n")}`)
  await os_?.close()
  await fake?.close()
  tmp?.cleanup()
})

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

const ocSyncLog = (m) => readOcSyncLog(m)

/** `node bin/oc-sync.js …args` with the machine's environment → { code, stdout, stderr, ms, why }. */
async function cli(m, args, label, { env } = {}) {
  const r = await m.run(process.execPath, [CLI, ...args], { cwd: m.project ?? m.home, env, timeoutMs: CLI_MS })
  timings.push([`oc-sync ${label}`, r.ms])
  r.why = `oc-sync ${args.join(" ")} on ${m.name} (${label}) → code ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}\noc-sync log tail:\n${ocSyncLog(m)}\nfake-opensync stderr:\n${os_.stderr()}`
  assert.equal(r.timedOut, false, r.why)
  return r
}

function parseJson(r) {
  try {
    return JSON.parse(r.stdout)
  } catch {
    assert.fail(`printed no JSON. ${r.why}`)
  }
}

/** `opencode run` in the machine's project, must exit 0. */
async function ocRun(m, args, label) {
  const r = await m.opencode(["run", ...args], { cwd: m.project, timeoutMs: RUN_MS })
  timings.push([`opencode run ${label}`, r.ms])
  const why = `opencode run ${args.join(" ")} on ${m.name} → code ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr.slice(-6000)}`
  assert.equal(r.timedOut, false, why)
  assert.equal(r.code, 0, why)
  r.why = why
  return r
}

async function sessionList(m) {
  const r = await m.opencode(["session", "list", "--format", "json"], { cwd: m.project, timeoutMs: RUN_MS })
  assert.equal(r.code, 0, `session list on ${m.name}: ${r.stderr}`)
  const out = r.stdout.trim()
  return out ? JSON.parse(out) : []
}

async function ocExport(m, sid) {
  const r = await m.opencode(["export", sid], { cwd: m.project, timeoutMs: RUN_MS })
  const why = `opencode export ${sid} on ${m.name} → code ${r.code}\nstdout:\n${r.stdout.slice(0, 2000)}\nstderr:\n${r.stderr.slice(-4000)}`
  assert.equal(r.code, 0, why)
  try {
    return JSON.parse(r.stdout)
  } catch {
    assert.fail(`export printed no JSON. ${why}`)
  }
}

const credFile = (m) => path.join(m.dirs.data, "oc-sync", "opensync.json")
const short = (v) => JSON.stringify(v, null, 1).slice(0, 6000)

// ---------------------------------------------------------------------------------------------
// 1
// ---------------------------------------------------------------------------------------------

test("the CLI exports a real OpenCode session", async (t) => {
  const a = await createMachine("A", { root: tmp.root, modelUrl: fake.url })
  a.project = await a.projectDir("demo")

  // Run 1: the model calls `read`, then answers with text. Run 2 continues the session.
  const readme = path.join(a.project, "README.md")
  const firstText = "Read the README.\nIt says: demo."
  fake.setScript(toolThenText([{ name: "read", args: { filePath: readme } }], firstText))
  await ocRun(a, ["hello"], "A#1 (tool call)")
  const list = await sessionList(a)
  assert.equal(list.length, 1, JSON.stringify(list))
  const sid = list[0].id
  const secondText = "second answer from A"
  fake.setScript(() => secondText)
  await ocRun(a, ["-s", sid, "again"], "A#2 (-s)")
  fake.setScript(undefined)

  const exp = await ocExport(a, sid)
  const [{ n: dbCount }] = await a.db(`SELECT count(*) AS n FROM message WHERE session_id = '${sid}'`, { cwd: a.project })
  const [{ n: allCount }] = await a.db(`SELECT count(*) AS n FROM message`, { cwd: a.project })
  assert.equal(dbCount, exp.messages.length, "export and DB agree on the message count")
  assert.equal(allCount, dbCount, "A has one session only")
  assert.ok(dbCount >= 4, `at least user, assistant(tool), user, assistant: ${dbCount}`)
  const assistantCost = exp.messages.filter((x) => x.info.role === "assistant").reduce((s, x) => s + (x.info.cost ?? 0), 0)
  const [sessRow] = await a.db(`SELECT * FROM session WHERE id = '${sid}'`, { cwd: a.project })
  t.diagnostic(`session row cost=${sessRow?.cost}, Σ assistant cost=${assistantCost}`)

  // Login.
  const login = await cli(a, ["opensync", "login", "--url", os_.url, "--key", os_.key], "login")
  assert.equal(login.code, 0, login.why)
  assert.equal(login.stdout.includes(os_.key), false, "login does not print the full key")
  assert.equal(login.stderr.includes(os_.key), false, "login does not print the full key")
  const cf = credFile(a)
  assert.ok(fs.existsSync(cf), `${cf} missing\n${login.why}`)
  assert.deepEqual(JSON.parse(fs.readFileSync(cf, "utf8")), { url: os_.url, apiKey: os_.key })
  if (process.platform !== "win32") assert.equal(fs.statSync(cf).mode & 0o777, 0o600, `${cf} mode`)

  // First export.
  const s1 = await cli(a, ["opensync", "sync", "--json"], "sync #1")
  assert.equal(s1.code, 0, s1.why)
  const rep1 = parseJson(s1)
  assert.equal(rep1.ok, true, s1.why)
  assert.equal(rep1.sessionsStored, 1, s1.why)
  assert.equal(rep1.messagesStored, dbCount, s1.why)
  assert.deepEqual(rep1.refused ?? [], [], s1.why)

  const st = await os_.state()
  const sess = st.sessions.find((s) => s.externalId === sid)
  assert.ok(sess, `the fake holds ${sid}: ${short(st.sessions)}`)
  assert.equal(st.sessions.length, 1, short(st.sessions))
  assert.equal(sess.source, "opencode")
  assert.equal(typeof sess.title, "string")
  assert.ok(sess.title.length > 0, "title non-empty")
  assert.equal(sess.title, list[0].title, "the title is OpenCode's")
  assert.equal(sess.projectPath, a.project)
  assert.equal(sess.projectName, "demo")
  assert.equal(sess.model, "m", short(sess))
  assert.equal(sess.provider, "fake", short(sess))
  assert.ok(sess.promptTokens > 0, `promptTokens ${short(sess)}`)
  assert.ok(sess.completionTokens > 0, `completionTokens ${short(sess)}`)
  // The harness's model declares cost {input: 1, output: 2} (per million tokens), so OpenCode prices it.
  assert.ok(assistantCost > 0, `OpenCode priced the session: Σ assistant cost ${assistantCost}`)
  assert.ok(Math.abs(sess.cost - assistantCost) < 1e-12, `cost ${sess.cost} = Σ assistant cost ${assistantCost}`)
  if (typeof sessRow?.cost === "number") assert.ok(Math.abs(sess.cost - sessRow.cost) < 1e-12, `cost ${sess.cost} = session row cost ${sessRow.cost}`)
  const sumIn = exp.messages.reduce((s, x) => s + (x.info.tokens?.input ?? 0), 0)
  const sumOut = exp.messages.reduce((s, x) => s + (x.info.tokens?.output ?? 0) + (x.info.tokens?.reasoning ?? 0), 0)
  assert.equal(sess.promptTokens, sumIn, "promptTokens = Σ tokens.input")
  assert.equal(sess.completionTokens, sumOut, "completionTokens = Σ tokens.output + reasoning")

  // Every message, with role and parts.
  const msgs = st.messages.filter((x) => x.sessionExternalId === sid)
  assert.equal(msgs.length, dbCount, `messages on the fake: ${msgs.length}, in the DB: ${dbCount}`)
  assert.deepEqual(
    msgs.map((x) => x.externalId).sort(),
    exp.messages.map((x) => x.info.id).sort(),
    "the fake holds exactly the session's messages",
  )
  for (const x of msgs) {
    const src = exp.messages.find((e) => e.info.id === x.externalId)
    assert.equal(x.role, src.info.role, `role of ${x.externalId}`)
    assert.ok(Array.isArray(x.parts), `parts of ${x.externalId}: ${short(x)}`)
    assert.equal(x.sessionId, sess._id, "the message hangs off the session")
    // The original time, and the message's own tokens.
    const [row] = await a.db(`SELECT time_created AS t FROM message WHERE id = '${x.externalId}'`, { cwd: a.project })
    assert.equal(x.createdAt, row.t, `createdAt of ${x.externalId} is OpenCode's`)
    assert.equal(x.createdAt, src.info.time.created, `createdAt of ${x.externalId} = info.time.created`)
    if (src.info.role === "assistant") {
      assert.equal(x.promptTokens, src.info.tokens.input, `promptTokens of ${x.externalId}`)
      assert.equal(x.completionTokens, src.info.tokens.output + (src.info.tokens.reasoning ?? 0), `completionTokens of ${x.externalId}`)
      assert.equal(x.model, "m")
    }
    // textContent = every text part of the message joined with a blank line.
    const texts = src.parts.filter((p) => p.type === "text" && p.text && !p.ignored).map((p) => p.text)
    if (texts.length) assert.equal(x.textContent, texts.join("\n\n"), `textContent of ${x.externalId}`)
  }
  // The session at its original time (the dashboard lists it then), its messages in order.
  assert.equal(sess.createdAt, sessRow.time_created, `session createdAt ${sess.createdAt} = OpenCode's ${sessRow.time_created}`)
  assert.ok(sess.updatedAt >= sess.createdAt)
  assert.equal(sess.messageCount, dbCount, "messageCount")
  const byTime = [...msgs].sort((p, q) => p.createdAt - q.createdAt).map((x) => x.externalId)
  assert.deepEqual(byTime, [...exp.messages].sort((p, q) => p.info.time.created - q.info.time.created).map((x) => x.info.id), "ordered as in OpenCode")
  // Every part OpenCode shows (text and tool) arrived.
  for (const src of exp.messages) {
    const x = msgs.find((y) => y.externalId === src.info.id)
    const kept = src.parts.filter((p) => (p.type === "text" && p.text?.trim() && !p.ignored) || p.type === "tool")
    const expected = kept.flatMap((p) => (p.type === "tool" ? (["completed", "error"].includes(p.state?.status) ? ["tool-call", "tool-result"] : ["tool-call"]) : ["text"]))
    assert.deepEqual(x.parts.map((p) => p.type), expected, `parts of ${x.externalId}`)
  }
  // Endpoint by endpoint: the session and each message one by one, accepted.
  const posts = st.requests.filter((r) => r.method === "POST")
  assert.deepEqual(posts.map((r) => r.path), ["/sync/session", ...exp.messages.map(() => "/sync/message")], short(posts.map((r) => r.path)))
  assert.ok(posts.every((r) => r.status === 200), short(posts.map((r) => [r.path, r.status, r.response])))

  const users = msgs.filter((x) => x.role === "user")
  assert.ok(users.some((x) => x.textContent?.includes("hello")), short(users))
  assert.ok(users.some((x) => x.textContent?.includes("again")), short(users))

  // The tool call and its result.
  const withTool = msgs.find((x) => x.parts.some((p) => p.type === "tool-call"))
  assert.ok(withTool, `an assistant message with a tool-call part: ${short(msgs)}`)
  assert.equal(withTool.role, "assistant")
  const call = withTool.parts.find((p) => p.type === "tool-call")
  assert.equal(call.content?.name, "read", short(call))
  assert.equal(call.content?.args?.filePath, readme, short(call))
  const result = msgs.flatMap((x) => x.parts).find((p) => p.type === "tool-result")
  assert.ok(result, `a tool-result part: ${short(msgs)}`)
  assert.equal(result.content?.name, "read")
  assert.equal(result.content?.callId, call.content?.callId)
  assert.equal(result.content?.status, "completed", short(result))
  assert.match(JSON.stringify(result.content?.result ?? ""), /# demo/, "the tool result holds the README")

  // Full text of the answers.
  const assistants = msgs.filter((x) => x.role === "assistant")
  assert.ok(assistants.some((x) => x.textContent === firstText), `full first answer: ${short(assistants.map((x) => x.textContent))}`)
  assert.ok(assistants.some((x) => x.textContent === secondText), `second answer: ${short(assistants.map((x) => x.textContent))}`)
  assert.ok(
    assistants.some((x) => x.parts.some((p) => p.type === "text" && p.content === firstText)),
    "the answer text is a text part too",
  )

  // Second export: nothing changed, nothing sent.
  const before2 = (await os_.state()).requests.length
  const s2 = await cli(a, ["opensync", "sync", "--json"], "sync #2 (nothing changed)")
  assert.equal(s2.code, 0, s2.why)
  const rep2 = parseJson(s2)
  assert.equal(rep2.messagesStored, 0, s2.why)
  assert.equal(rep2.sessionsStored, 0, s2.why)
  const st2 = await os_.state()
  const posted = st2.requests.slice(before2).filter((r) => r.method === "POST")
  assert.deepEqual(posted.map((r) => r.path), [], "no POST on a sync without changes")
  assert.equal(st2.messages.length, st.messages.length)

  // Status: connected, key masked.
  const stat = await cli(a, ["opensync", "status", "--json"], "status")
  assert.equal(stat.code, 0, stat.why)
  const sj = parseJson(stat)
  assert.equal(sj.connected, true, stat.why)
  assert.equal(sj.url, os_.url)
  assert.equal(stat.stdout.includes(os_.key), false, `status prints the full key:\n${stat.stdout}`)
  assert.equal(stat.stderr.includes(os_.key), false)
  assert.notEqual(sj.key, os_.key)
  assert.ok(sj.key.startsWith("osk_") && sj.key.endsWith(os_.key.slice(-4)), `masked key: ${sj.key}`)
  assert.equal(sj.sessionsOnServer, 1, stat.why)
  assert.deepEqual(sj.refused, [], stat.why)
  assert.equal(sj.sessionsSynced, 1, stat.why)
  assert.equal(sj.messagesSynced, dbCount, stat.why)
  assert.equal(sj.pendingSessions, 0, stat.why)

  // The key went only in the Authorization header: never into a body the fake recorded.
  for (const r of st2.requests) assert.equal(JSON.stringify(r.body).includes(os_.key), false, `${r.method} ${r.path} body holds the key`)
  // Nor into oc-sync's logs.
  assert.equal(ocSyncLog(a).includes(os_.key), false, "oc-sync's log holds the key")
})

// ---------------------------------------------------------------------------------------------
// 2
// ---------------------------------------------------------------------------------------------

test("the plugin exports after OpenCode runs", async (t) => {
  pkg ??= await packPlugin(tmp.root)
  const remote = path.join(tmp.root, "remote-b")
  const b = await createMachine("B", {
    root: tmp.root,
    modelUrl: fake.url,
    plugins: [`file://${pkg.dir}`],
    env: { OC_SYNC_REMOTE: remote },
  })
  b.project = await b.projectDir("demo-b")
  const cf = credFile(b)
  fs.mkdirSync(path.dirname(cf), { recursive: true })
  fs.writeFileSync(cf, JSON.stringify({ url: os_.url, apiKey: os_.key }, null, 2) + "\n", { mode: 0o600 })
  fs.chmodSync(cf, 0o600)

  const r = await ocRun(b, ["--print-logs", "hi"], "B (plugin)")
  assert.equal(r.stdout.trim(), DEFAULT_TEXT, "the plugin printed nothing on stdout")
  assert.doesNotMatch(r.stderr, /failed to load plugin/)
  assert.match(r.stderr, /message="oc-sync stopped"/, r.why)

  // `opencode db` does not load the plugin (`session list` and `export` do, which would sync again).
  const sessions = await b.db(`SELECT id FROM session`, { cwd: b.project })
  assert.equal(sessions.length, 1, JSON.stringify(sessions))
  const sid = sessions[0].id
  const dbMsgs = await b.db(`SELECT id, json_extract(data, '$.role') AS role, json_extract(data, '$.time.completed') AS completed FROM message WHERE session_id = '${sid}' ORDER BY time_created, id`, { cwd: b.project })
  const dbParts = await b.db(`SELECT message_id AS mid, json_extract(data, '$.type') AS type, json_extract(data, '$.text') AS text FROM part WHERE session_id = '${sid}' ORDER BY id`, { cwd: b.project })
  const dbView = `B's DB: messages ${JSON.stringify(dbMsgs)}\nparts ${JSON.stringify(dbParts)}`

  const st = await os_.state()
  const sess = st.sessions.find((s) => s.externalId === sid)
  assert.ok(
    sess,
    `the plugin exported B's session ${sid} to OpenSync; the fake holds ${st.sessions.map((s) => s.externalId).join(", ") || "nothing"}\n` +
      `requests: ${st.requests.map((q) => `${q.method} ${q.path} ${q.status}`).join("; ")}\n` +
      `${r.why}\noc-sync log tail:\n${ocSyncLog(b)}`,
  )
  assert.equal(sess.source, "opencode")
  assert.equal(sess.projectPath, b.project)
  assert.equal(sess.model, "m")
  const msgs = st.messages.filter((x) => x.sessionExternalId === sid)
  // Everything B's database holds was exported, in its final state (the dispose export ran last).
  assert.deepEqual(msgs.map((x) => x.externalId).sort(), dbMsgs.map((x) => x.id).sort(), `exported messages = B's DB messages\n${dbView}\n${short(msgs)}`)
  for (const m of dbMsgs) {
    const x = msgs.find((y) => y.externalId === m.id)
    assert.equal(x.role, m.role)
    const texts = dbParts.filter((p) => p.mid === m.id && p.type === "text" && p.text).map((p) => p.text)
    assert.equal(x.textContent, texts.length ? texts.join("\n\n") : undefined, `textContent of ${m.id} is the DB's final text\n${dbView}\n${short(x)}`)
  }
  // What `opencode run` printed is the conversation: the user's "hi" and the model's answer.
  // (Fails when OpenCode's own database lost the end of the run — then there is nothing to export.)
  assert.ok(
    dbMsgs.some((m) => m.role === "assistant" && m.completed) && dbParts.some((p) => p.type === "text" && p.text === DEFAULT_TEXT),
    `B's OpenCode database holds the completed answer that opencode run printed (plugin loaded)\n${dbView}\noc-sync log tail:\n${ocSyncLog(b)}`,
  )
  assert.ok(msgs.some((x) => x.role === "user" && x.textContent === "hi"), short(msgs))
  assert.ok(msgs.some((x) => x.role === "assistant" && x.textContent === DEFAULT_TEXT), short(msgs))
  assert.ok(sess.promptTokens > 0 && sess.completionTokens > 0 && sess.cost > 0, `final totals exported: ${short(sess)}`)
  // The synced remote got the config too (the folder sync ran alongside).
  assert.ok(fs.existsSync(remote), `the folder remote ${remote} was created`)
  // The key never reached a log.
  assert.equal(r.stderr.includes(os_.key), false, "opencode --print-logs output holds the key")
  assert.equal(ocSyncLog(b).includes(os_.key), false, "oc-sync's log holds the key")
  t.diagnostic(`opencode run with plugin + OpenSync: ${r.ms} ms`)
})

// ---------------------------------------------------------------------------------------------
// 3
// ---------------------------------------------------------------------------------------------

test("a wrong key is explained", async () => {
  const c = await createMachine("C", { root: tmp.root, modelUrl: fake.url })
  const wrong = "osk_wrongWrongWrong0123456789abcdefgh"
  assert.notEqual(wrong, os_.key)
  const r = await cli(c, ["opensync", "login", "--url", os_.url, "--key", wrong], "login (wrong key)")
  assert.equal(r.code, 1, r.why)
  assert.match(r.stderr, /key/i, r.why)
  assert.match(r.stderr, /wrong|revoked|refused|invalid/i, r.why)
  assert.match(r.stderr, /nothing was stored/i, r.why)
  assert.equal(r.stderr.includes(wrong), false, "the wrong key is not echoed in full")
  assert.equal(fs.existsSync(credFile(c)), false, `${credFile(c)} was written`)
  // And nothing else in C's HOME holds it.
  const hits = []
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.isFile() && fs.statSync(p).size < 50 * 1024 * 1024 && fs.readFileSync(p).includes(wrong)) hits.push(p)
    }
  }
  walk(c.home)
  assert.deepEqual(hits, [], "files holding the wrong key")
  // status then says: not set up.
  const s = await cli(c, ["opensync", "status", "--json"], "status (not set up)")
  assert.equal(s.code, 1, s.why)
})

// ---------------------------------------------------------------------------------------------
// 4
// ---------------------------------------------------------------------------------------------

test("a server that refuses sessions: nothing is claimed, the CLI exits 1, the plugin shows one toast", async () => {
  const d = await createMachine("D", { root: tmp.root, modelUrl: fake.url, env: { OC_SYNC_REMOTE: path.join(tmp.root, "remote-d") } })
  d.project = await d.projectDir("demo-d")
  await ocRun(d, ["hi"], "D")
  const [{ id: sid }] = await d.db(`SELECT id FROM session`, { cwd: d.project })
  const cf = credFile(d)
  fs.mkdirSync(path.dirname(cf), { recursive: true })
  fs.writeFileSync(cf, JSON.stringify({ url: os_.url, apiKey: os_.key }), { mode: 0o600 })
  const reason = "ArgumentValidationError: Object contains extra field `createdAt` that is not in the validator."
  await os_.refuse({ kind: "sessions", reason })
  try {
    const r = await cli(d, ["opensync", "sync"], "sync (sessions refused)")
    assert.equal(r.code, 1, r.why)
    assert.match(r.stdout, /stored 0 sessions and 0 messages/, r.why)
    assert.ok(r.stdout.includes(`refused by OpenSync: session ${sid}`) && r.stdout.includes("extra field `createdAt`"), r.why)
    const st = await os_.state()
    assert.equal(st.sessions.some((s) => s.externalId === sid), false, "the fake stored nothing of D")
    assert.equal(st.messages.some((m) => m.sessionExternalId === sid), false, "no message went without its session")
    const stat = parseJson(await cli(d, ["opensync", "status", "--json"], "status (refused)"))
    assert.equal(stat.sessionsSynced, 0, JSON.stringify(stat))
    assert.equal(stat.pendingSessions, 1, JSON.stringify(stat))
    assert.match(stat.refused[0]?.reason ?? "", /extra field/, JSON.stringify(stat))

    // Inside OpenCode's process: the plugin's database process exports, the server refuses, one toast.
    const script = `
      const { default: p } = await import(${JSON.stringify(fileURLToPath(new URL("../server.mjs", import.meta.url)))})
      const toasts = []
      const client = { app: { log: async () => {} }, tui: { showToast: async ({ body }) => void toasts.push(body) } }
      const h = await p.server({ client, directory: ${JSON.stringify(d.project)} }, {})
      const until = Date.now() + 60000
      while (Date.now() < until && toasts.length === 0) await new Promise((r) => setTimeout(r, 250))
      await new Promise((r) => setTimeout(r, 4500)) // more flushes: still one toast
      await h.dispose()
      process.stdout.write(JSON.stringify(toasts))
    `
    const pr = await d.run(process.execPath, ["--input-type=module", "-e", script], { cwd: d.project, timeoutMs: 120000 })
    const why = `plugin script → code ${pr.code}\nstdout: ${pr.stdout}\nstderr: ${pr.stderr}\noc-sync log tail:\n${ocSyncLog(d)}`
    assert.equal(pr.code, 0, why)
    const toasts = JSON.parse(pr.stdout)
    assert.equal(toasts.length, 1, why)
    assert.equal(toasts[0].variant, "error", why)
    assert.match(toasts[0].message, /OpenSync refused 1 item/, why)
    assert.match(toasts[0].message, /extra field/, why)
    assert.match(toasts[0].message, /oc-sync opensync sync/, why)
  } finally {
    await os_.refuse({ kind: null })
  }
  // Accepted again: the CLI stores all of it.
  const ok = await cli(d, ["opensync", "sync", "--json"], "sync (accepted)")
  assert.equal(ok.code, 0, ok.why)
  assert.equal(parseJson(ok).sessionsStored, 1, ok.why)
})
