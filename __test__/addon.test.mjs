// Loads the built native addon, the npm launcher and the OpenCode plugin entry, with every
// simulated machine in its own temporary HOME.
import { test } from "node:test"
import assert from "node:assert/strict"
import { spawnSync } from "node:child_process"
import { createRequire } from "node:module"
import fs from "node:fs"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const require = createRequire(import.meta.url)
const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"))

// Isolate this process before the addon reads its environment.
const home = fs.mkdtempSync(path.join(os.tmpdir(), "oc-sync-addon-"))
process.env.HOME = home
for (const v of ["XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "OC_SYNC_CONFIG", "OC_SYNC_REMOTE", "GITHUB_TOKEN", "GH_TOKEN", "OPENCODE_DB", "OPENCODE_CONFIG_DIR"]) delete process.env[v]
const native = require(path.join(root, "index.js"))

function cli(args, env = {}) {
  const h = fs.mkdtempSync(path.join(os.tmpdir(), "oc-sync-cli-"))
  const r = spawnSync(process.execPath, [path.join(root, "bin", "oc-sync.js"), ...args], {
    env: { PATH: process.env.PATH, HOME: h, ...env },
    encoding: "utf8",
  })
  return { code: r.status, out: r.stdout, err: r.stderr, home: h }
}

test("the addon reports the package version", () => {
  assert.equal(native.version(), pkg.version)
})

test("resolvePaths follows XDG variables like OpenCode", () => {
  process.env.XDG_DATA_HOME = path.join(home, "data")
  try {
    const p = native.resolvePaths()
    assert.equal(p.opencodeDb, path.join(home, "data", "opencode", "opencode.db"))
    assert.equal(p.opencodeConfig, path.join(home, ".config", "opencode"))
    assert.equal(p.configFile, path.join(home, ".config", "opencode", "opencode-sync.json"))
  } finally {
    delete process.env.XDG_DATA_HOME
  }
})

test("a Rust panic becomes a JS error, not a crash", () => {
  assert.throws(() => native._testPanic(), /oc-sync internal error in _testPanic: deliberate test panic/)
  // The addon still works afterwards.
  assert.equal(native.version(), pkg.version)
})

test("statusReport works on a fresh machine", () => {
  const r = native.statusReport()
  assert.equal(r.config.found, false)
  assert.equal(r.remote.kind, "local")
  assert.ok(r.nextSteps.length > 0)
})

test("launcher: --version, --help, usage errors and exit codes", () => {
  const v = cli(["--version"])
  assert.equal(v.code, 0)
  assert.equal(v.out.trim(), `oc-sync ${pkg.version}`)
  const h = cli(["--help"])
  assert.equal(h.code, 0)
  assert.match(h.out, /status/)
  const u = cli(["nope"])
  assert.equal(u.code, 2)
  assert.match(u.err, /unrecognized subcommand/)
  const none = cli([])
  assert.equal(none.code, 2)
})

test("launcher: status --json on a fresh machine, then init, then status again", () => {
  const s = cli(["status", "--json"])
  assert.equal(s.code, 0, s.err)
  const report = JSON.parse(s.out)
  assert.equal(report.config.found, false)
  assert.equal(report.machineId, null)
  const env = { HOME: s.home }
  const i = spawnSync(process.execPath, [path.join(root, "bin", "oc-sync.js"), "init"], { env: { PATH: process.env.PATH, ...env }, encoding: "utf8" })
  assert.equal(i.status, 0, i.stderr)
  const again = spawnSync(process.execPath, [path.join(root, "bin", "oc-sync.js"), "status", "--json"], { env: { PATH: process.env.PATH, ...env }, encoding: "utf8" })
  assert.equal(JSON.parse(again.stdout).config.found, true)
})

test("launcher: a broken config fails with the file, key and accepted values", () => {
  const h = fs.mkdtempSync(path.join(os.tmpdir(), "oc-sync-cli-"))
  const cfg = path.join(h, "cfg.json")
  fs.writeFileSync(cfg, '{ "conflictStrategy": "mine", }')
  const r = spawnSync(process.execPath, [path.join(root, "bin", "oc-sync.js"), "status"], {
    env: { PATH: process.env.PATH, HOME: h, OC_SYNC_CONFIG: cfg },
    encoding: "utf8",
  })
  assert.equal(r.status, 1)
  assert.match(r.stdout, new RegExp(cfg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")))
  assert.match(r.stdout, /conflictStrategy/)
  assert.match(r.stdout, /auto-merge, local-wins, remote-wins, newest-wins, ask/)
})

test("launcher: paths prints what it resolved", () => {
  const r = cli(["paths"], { XDG_STATE_HOME: "/x/state" })
  assert.equal(r.code, 0)
  assert.match(r.out, /oc-sync state\s+\/x\/state\/oc-sync/)
})

test("the plugin entry exports only { id, server }", async () => {
  const mod = await import(path.join(root, "server.mjs"))
  assert.deepEqual(Object.keys(mod), ["default"])
  assert.deepEqual(Object.keys(mod.default).sort(), ["id", "server"])
  assert.equal(mod.default.id, "oc-sync")
  assert.equal(typeof mod.default.server, "function")
  // package.json routes OpenCode to it.
  assert.equal(pkg.exports["./server"].import, "./server.mjs")
})

test("the plugin starts at once, forwards logs to client.app.log, and stops on dispose", async () => {
  const { default: plugin } = await import(path.join(root, "server.mjs"))
  const logs = []
  const client = { app: { log: async ({ body }) => void logs.push(body) } }
  const t0 = performance.now()
  const hooks = await plugin.server({ client, directory: home }, { conflictStrategy: "ask" })
  const startMs = performance.now() - t0
  assert.ok(startMs < 250, `server() took ${startMs} ms`)
  assert.equal(typeof hooks.event, "function")
  assert.equal(typeof hooks.dispose, "function")
  await hooks.event({ event: { type: "session.idle", properties: {} } })
  const t1 = performance.now()
  await hooks.dispose()
  assert.ok(performance.now() - t1 < 4000)
  await hooks.dispose() // idempotent
  assert.ok(logs.every((l) => l.service === "oc-sync"))
  assert.ok(logs.some((l) => /plugin loaded/.test(l.message)), JSON.stringify(logs))
  assert.ok(logs.some((l) => /loaded \(machine /.test(l.message)), JSON.stringify(logs))
  assert.ok(logs.some((l) => /stopped/.test(l.message)), JSON.stringify(logs))
})

test("the plugin reports a broken config through the log instead of throwing", async () => {
  const { default: plugin } = await import(path.join(root, "server.mjs"))
  const logs = []
  const client = { app: { log: async ({ body }) => void logs.push(body) } }
  const hooks = await plugin.server({ client, directory: home }, { conflictStrategy: 42 })
  // Logged while the plugin runs (the engine reports it once; the plugin forwards logs every 2 s),
  // not only at dispose: wait for the line (up to 6 s), then stop.
  const seen = () => logs.some((l) => l.level === "error" && /conflictStrategy/.test(l.message))
  try {
    for (let i = 0; i < 60 && !seen(); i++) await new Promise((r) => setTimeout(r, 100))
    assert.ok(seen(), JSON.stringify(logs))
  } finally {
    await hooks.dispose()
  }
  assert.ok(logs.some((l) => l.level === "error" && /conflictStrategy/.test(l.message)), JSON.stringify(logs))
})

test("the plugin prints nothing to stdout or stderr", () => {
  const script = `
    const { default: p } = await import(${JSON.stringify(path.join(root, "server.mjs"))})
    const h = await p.server({ client: { app: { log: async () => {} } }, directory: "/" }, { bogusKey: 1 })
    await h.event({ event: { type: "session.updated" } })
    await h.dispose()
  `
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    env: { PATH: process.env.PATH, HOME: fs.mkdtempSync(path.join(os.tmpdir(), "oc-sync-quiet-")) },
    encoding: "utf8",
    timeout: 15000,
  })
  assert.equal(r.status, 0, r.stderr)
  assert.equal(r.stdout, "")
  assert.equal(r.stderr, "")
})

test("the plugin shows a toast when a conflict waits for the person", async () => {
  const { default: plugin } = await import(path.join(root, "server.mjs"))
  const id = "1795000000000-abcdef12"
  const dir = path.join(home, ".local", "share", "oc-sync", "conflicts", id)
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, "meta.json"), JSON.stringify({
    id, key: "config/opencode.json", created_ms: 1795000000000, strategy: "ask", winner: "none", needs_person: true,
    resolved: null, local_clock: { a: 1 }, remote_clock: { b: 1 }, local_machine: "a", remote_machine: "b", details: [], dir,
  }))
  const toasts = []
  const client = { app: { log: async () => {} }, tui: { showToast: async ({ body }) => void toasts.push(body) } }
  const hooks = await plugin.server({ client, directory: home }, {})
  await new Promise((r) => setTimeout(r, 600))
  await hooks.dispose()
  fs.rmSync(path.join(home, ".local", "share", "oc-sync", "conflicts"), { recursive: true })
  assert.equal(toasts.length, 1, JSON.stringify(toasts))
  assert.equal(toasts[0].variant, "warning")
  assert.match(toasts[0].message, /config\/opencode\.json/)
})

// ---- issue 18: what stops syncing is shown once, and a fix is picked up while OpenCode runs ----

const until = async (what, f, ms = 10000) => {
  const t0 = Date.now()
  while (!f()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

test("a broken config is logged and toasted once; fixing the file while the plugin runs makes the next sync succeed", async () => {
  const { default: plugin } = await import(path.join(root, "server.mjs"))
  const cfgDir = path.join(home, ".config", "opencode")
  const file = path.join(cfgDir, "opencode-sync.json")
  const remote = path.join(home, "fixed-remote")
  fs.mkdirSync(cfgDir, { recursive: true })
  fs.writeFileSync(path.join(cfgDir, "AGENTS.md"), "synced after the fix\n")
  fs.writeFileSync(file, '{ "conflictStrategy": "mine" }')
  const logs = []
  const toasts = []
  const client = { app: { log: async ({ body }) => void logs.push(body) }, tui: { showToast: async ({ body }) => void toasts.push(body) } }
  const hooks = await plugin.server({ client, directory: home }, { fileWatcherDebounceMs: 200, maxDebounceMs: 1000 })
  try {
    await until("the config toast", () => toasts.length > 0)
    assert.equal(toasts[0].variant, "error")
    assert.match(toasts[0].message, /conflictStrategy/)
    assert.match(toasts[0].message, /To fix: fix oc-sync's config/)
    await until("the error in the log", () => logs.some((l) => l.level === "error" && /conflictStrategy/.test(l.message)))
    // Not repeated while it stays broken.
    await new Promise((r) => setTimeout(r, 2500))
    assert.equal(toasts.length, 1, JSON.stringify(toasts))
    assert.equal(logs.filter((l) => /conflictStrategy/.test(l.message)).length, 1, JSON.stringify(logs))
    // Fixed while the plugin runs: auto-sync starts, says so, and the next sync reaches the remote.
    fs.writeFileSync(file, JSON.stringify({ conflictStrategy: "newest-wins", remote }))
    await until("the recovery toast", () => toasts.some((t) => /syncing again/.test(t.message)))
    assert.equal(toasts.at(-1).variant, "success")
    await hooks.event({ event: { type: "session.idle", properties: {} } })
    // The startup sync (1 s after the start) or this event's: the remote gets a snapshot.
    await until("the sync to reach the remote", () => fs.existsSync(path.join(remote, "HEAD")), 15000)
  } finally {
    await hooks.dispose()
    fs.rmSync(file, { force: true })
    fs.rmSync(path.join(cfgDir, "AGENTS.md"), { force: true })
  }
  assert.equal(toasts.filter((t) => t.variant === "error").length, 1, JSON.stringify(toasts))
})

test("the plugin loaded twice in one process runs once: the second copy stays idle with a warning", async () => {
  const { default: plugin } = await import(path.join(root, "server.mjs"))
  const toasts = [[], []]
  const mk = (i) => ({ app: { log: async () => {} }, tui: { showToast: async ({ body }) => void toasts[i].push(body) } })
  const copies = [
    await plugin.server({ client: mk(0), directory: home }, { autoSyncOnStartup: false }),
    await plugin.server({ client: mk(1), directory: home }, { autoSyncOnStartup: false }),
  ]
  try {
    // Both engines start on their own threads: whichever comes second stays idle and says so.
    await until("the warning", () => toasts[0].length + toasts[1].length > 0)
    const idle = toasts[1].length > 0 ? 1 : 0
    assert.equal(toasts[idle][0].variant, "warning")
    assert.match(toasts[idle][0].message, /loaded twice/)
    assert.equal(toasts[1 - idle].length, 0, JSON.stringify(toasts))
    // The running copy unloaded (OpenCode reloading plugins): the idle one takes over.
    await copies[1 - idle].dispose()
    await until("the take-over", () => toasts[idle].some((t) => /syncing again/.test(t.message)))
  } finally {
    await copies[0].dispose()
    await copies[1].dispose()
  }
  // And a later start runs normally.
  const again = []
  const third = await plugin.server({ client: { app: { log: async () => {} }, tui: { showToast: async ({ body }) => void again.push(body) } }, directory: home }, { autoSyncOnStartup: false })
  await new Promise((r) => setTimeout(r, 2500))
  await third.dispose()
  assert.equal(again.length, 0, JSON.stringify(again))
})

test("the plugin adds /sync, /sync-status and /sync-conflicts and answers them in the session, not through the model", async () => {
  const { default: plugin } = await import(path.join(root, "server.mjs"))
  const shown = []
  const client = {
    app: { log: async () => {} },
    session: { prompt: async (req) => void shown.push(req) },
  }
  const hooks = await plugin.server({ client, directory: home }, {})
  const cfg = { command: { "sync-status": { template: "mine", description: "the person's own" } } }
  await hooks.config(cfg)
  assert.deepEqual(Object.keys(cfg.command).sort(), ["sync", "sync-conflicts", "sync-status"])
  assert.equal(cfg.command["sync-status"].template, "mine", "a command of the person's is kept")
  assert.match(cfg.command["sync-conflicts"].description, /oc-sync/)
  // Ours: answered in the session (noReply, ignored by the model), then the command ends quietly.
  await assert.rejects(hooks["command.execute.before"]({ command: "sync-conflicts", sessionID: "ses_1", arguments: "" }, { parts: [] }), (e) => e.message === "")
  assert.equal(shown.length, 1)
  assert.equal(shown[0].path.id, "ses_1")
  assert.equal(shown[0].body.noReply, true)
  assert.equal(shown[0].body.parts[0].ignored, true)
  assert.equal(shown[0].body.parts[0].text, "No open sync conflicts.")
  // Not ours (the person's /sync-status, any other command): untouched.
  await hooks["command.execute.before"]({ command: "sync-status", sessionID: "ses_1", arguments: "" }, { parts: [] })
  await hooks["command.execute.before"]({ command: "review", sessionID: "ses_1", arguments: "" }, { parts: [] })
  assert.equal(shown.length, 1)
  // The agent's tools.
  assert.deepEqual(Object.keys(hooks.tool).sort(), ["oc_sync", "oc_sync_resolve"])
  assert.equal(await hooks.tool.oc_sync.execute({ action: "conflicts" }, {}), "No open sync conflicts.")
  assert.match(await hooks.tool.oc_sync_resolve.execute({ key: "config/x.md", keep: "sideways" }, {}), /local.*remote/)
  await hooks.dispose()
})
