// Auto-sync inside the real OpenCode 1.18.33: no manual `oc-sync sync` anywhere. Machine A edits its
// config while `opencode run` runs with the plugin; machine B (its own HOME) picks the change up
// through a shared local remote just by running OpenCode; and an offline remote costs nothing.
import { test, before, after } from "node:test"
import assert from "node:assert/strict"
import fs from "node:fs"
import path from "node:path"
import { startFakeModel, createMachine, makeTempRoot, resolveOpencodeBin, packPlugin, DEFAULT_TEXT, startServe } from "./harness/index.mjs"

const HANG_MS = 30000 // healthy runs take 3-8 s; this only catches hangs

let tmp, fake, pkg

before(async () => {
  resolveOpencodeBin()
  tmp = makeTempRoot("oc-sync-autosync-")
  fake = await startFakeModel({ script: (req) => (req.index === 0 ? { text: DEFAULT_TEXT, delayMs: 1500 } : undefined) })
  pkg = await packPlugin(tmp.root)
})

after(async () => {
  await fake?.close()
  tmp?.cleanup()
})

async function machine(name, remote, extra = {}) {
  return createMachine(name, {
    root: tmp.root,
    modelUrl: fake.url,
    plugins: [`file://${pkg.dir}`],
    env: { OC_SYNC_REMOTE: remote, ...extra },
  })
}

function write(m, rel, text) {
  const p = path.join(m.opencodeDirs.config, rel)
  fs.mkdirSync(path.dirname(p), { recursive: true })
  fs.writeFileSync(p, text)
}

function read(m, rel) {
  try {
    return fs.readFileSync(path.join(m.opencodeDirs.config, rel), "utf8")
  } catch {
    return null
  }
}

async function runOpencode(m) {
  m.project ??= await m.projectDir("demo")
  const project = m.project
  const r = await m.opencode(["run", "--print-logs", "hi"], { cwd: project, timeoutMs: 90000 })
  assert.equal(r.timedOut, false, r.stderr)
  assert.equal(r.code, 0, `opencode run failed:\n${r.stderr}`)
  assert.ok(r.ms < HANG_MS, `opencode run took ${r.ms} ms`)
  assert.equal(r.stdout.trim(), DEFAULT_TEXT, "the plugin printed nothing on stdout")
  return r
}

test("a change made while OpenCode runs on A reaches B without any manual sync", async () => {
  const remote = path.join(tmp.root, "remote-1")
  const a = await machine("a1", remote)
  const b = await machine("b1", remote)
  write(a, "agents/review.md", "# Reviewer\nReview carefully.\n")
  // Edit while `opencode run` is in flight (the model answers after 1.5 s).
  const running = runOpencode(a)
  await new Promise((r) => setTimeout(r, 700))
  write(a, "AGENTS.md", "Always write tests.\n")
  const ra = await running
  assert.match(ra.stderr, /oc-sync stopped/)
  // B only runs OpenCode: the startup sync pulls, dispose waits for it.
  await runOpencode(b)
  assert.equal(read(b, "agents/review.md"), "# Reviewer\nReview carefully.\n")
  assert.equal(read(b, "AGENTS.md"), "Always write tests.\n")
})

test("offline: edits pile up, OpenCode and the CLI keep working, everything arrives once the remote is back", async () => {
  const share = path.join(tmp.root, "share-2") // not mounted yet: its parent folder is missing
  const remote = path.join(share, "remote")
  const a = await machine("a2", remote)
  const b = await machine("b2", remote)
  write(a, "commands/one.md", "first\n")
  await runOpencode(a)
  write(a, "commands/two.md", "second\n")
  const r2 = await runOpencode(a)
  assert.match(r2.stderr, /cannot reach the remote/)
  const st = await a.run(process.execPath, [path.join(pkg.dir, "bin", "oc-sync.js"), "status", "--json"])
  assert.equal(st.code, 0, st.stderr)
  const report = JSON.parse(st.stdout)
  assert.equal(report.remote.reachable, false)
  assert.equal(report.pending.config >= 2, true, JSON.stringify(report.pending))
  // The share comes back.
  fs.mkdirSync(share)
  await runOpencode(a)
  await runOpencode(b)
  assert.equal(read(b, "commands/one.md"), "first\n")
  assert.equal(read(b, "commands/two.md"), "second\n")
})

test("a config fixed while OpenCode runs is used without a restart: auto-sync starts and pushes", async () => {
  const remote = path.join(tmp.root, "remote-3")
  const a = await machine("a3", remote)
  write(a, "AGENTS.md", "Pushed once the config is fixed.\n")
  write(a, "opencode-sync.json", '{ "conflictStrategy": "mine" }')
  a.project ??= await a.projectDir("demo")
  const serve = await startServe(a, { cwd: a.project, args: ["--print-logs"] })
  try {
    // The plugin loads with the instance (first request for the directory) and reports the config.
    await fetch(`${serve.url}/session?directory=${encodeURIComponent(a.project)}`)
    const t0 = Date.now()
    while (!/conflictStrategy/.test(serve.output()) && Date.now() - t0 < 30000) await new Promise((r) => setTimeout(r, 200))
    assert.match(serve.output(), /conflictStrategy/, "the broken config is logged while OpenCode runs")
    assert.equal(fs.existsSync(path.join(remote, "HEAD")), false, "nothing syncs with a broken config")
    // Fixed while OpenCode runs: within a few seconds auto-sync starts and its startup sync pushes.
    write(a, "opencode-sync.json", '{ "conflictStrategy": "newest-wins" }')
    const t1 = Date.now()
    while (!fs.existsSync(path.join(remote, "HEAD")) && Date.now() - t1 < 30000) await new Promise((r) => setTimeout(r, 200))
    assert.ok(fs.existsSync(path.join(remote, "HEAD")), `no sync after the fix:\n${serve.output().slice(-3000)}`)
    // The plugin forwards the engine's log every 2 s.
    const t2 = Date.now()
    while (!/syncing again/.test(serve.output()) && Date.now() - t2 < 10000) await new Promise((r) => setTimeout(r, 200))
    assert.match(serve.output(), /syncing again/)
  } finally {
    await serve.stop()
  }
})
