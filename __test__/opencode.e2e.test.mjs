// End to end with the real OpenCode 1.18.33: the packed oc-sync package is loaded by `opencode run`
// the three ways people install it, logs through client.app.log, stops in dispose, and OpenCode
// exits 0 promptly with nothing of oc-sync on its stdout.
import { test, before, after } from "node:test"
import assert from "node:assert/strict"
import fs from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { startFakeModel, createMachine, makeTempRoot, resolveOpencodeBin, packPlugin, npmInstallPacked, DEFAULT_TEXT } from "./harness/index.mjs"

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const version = JSON.parse(fs.readFileSync(path.join(repo, "package.json"), "utf8")).version
const HANG_MS = 30000 // a healthy run takes 3-5 s; this only catches hangs
const LOADED = `oc-sync ${version} plugin loaded`

let tmp, fake, tarballs, unpacked

before(async () => {
  resolveOpencodeBin() // fails (never skips) when OpenCode is missing
  tmp = makeTempRoot("oc-sync-e2e-")
  fake = await startFakeModel()
  ;({ tarballs, dir: unpacked } = await packPlugin(tmp.root))
})

after(async () => {
  await fake?.close()
  tmp?.cleanup()
})

/** Runs `opencode run hi` in a project and checks everything the plugin promises. */
async function runWithPlugin(machine) {
  const project = await machine.projectDir("demo")
  const r = await machine.opencode(["run", "--print-logs", "hi"], { cwd: project, timeoutMs: 90000 })
  assert.equal(r.timedOut, false, r.stderr)
  assert.equal(r.code, 0, `opencode run failed:\n${r.stderr}`)
  assert.ok(r.ms < HANG_MS, `opencode run took ${r.ms} ms`)
  // Nothing but the model's answer on stdout: the plugin printed nothing.
  assert.equal(r.stdout.trim(), DEFAULT_TEXT)
  // Loaded: its first log line reached OpenCode's own log file.
  assert.match(machine.readOpencodeLogs(), new RegExp(LOADED.replace(/\./g, "\\.")))
  // The engine's own line and dispose's last line (OpenCode's file may lose its tail; --print-logs has it).
  assert.match(r.stderr, /oc-sync 0\.\d+\.\d+ loaded \(machine /)
  assert.match(r.stderr, /message="oc-sync stopped"/)
  assert.doesNotMatch(r.stderr, /failed to load plugin/)
  // The engine created this machine's id in oc-sync's own state dir.
  assert.ok(fs.existsSync(path.join(machine.dirs.state, "oc-sync", "machine-id")))
  return r
}

test("loads from a file:// URL (install way 2)", async () => {
  const m = await createMachine("file-url", { root: tmp.root, modelUrl: fake.url, plugins: [`file://${unpacked}`] })
  await runWithPlugin(m)
})

test("loads by bare name from OpenCode's own package cache (install way 1)", async () => {
  const m = await createMachine("bare-name", { root: tmp.root, modelUrl: fake.url, plugins: ["oc-sync"] })
  // What OpenCode's own install of "oc-sync" leaves behind (it downloads nothing when this exists):
  // the package with its optional platform package, installed from the tarballs.
  const cacheDir = path.join(m.dirs.cache, "opencode", "packages", "oc-sync@latest")
  fs.mkdirSync(cacheDir, { recursive: true })
  await npmInstallPacked(tarballs, { cwd: cacheDir, run: m.run })
  await runWithPlugin(m)
})

test("npm install in the config dir plus `oc-sync install` (install way 3)", async () => {
  const m = await createMachine("npm-install", { root: tmp.root, modelUrl: fake.url, plugins: [] })
  const cfg = path.join(m.dirs.config, "opencode")
  await npmInstallPacked(tarballs, { cwd: cfg, registry: true, run: m.run })
  const install = await m.run(path.join(cfg, "node_modules", ".bin", "oc-sync"), ["install"], { cwd: cfg })
  assert.equal(install.code, 0, install.stderr)
  assert.match(install.stdout, /add "oc-sync" to "plugin"/)
  const status = await m.run(path.join(cfg, "node_modules", ".bin", "oc-sync"), ["status", "--json"], { cwd: cfg })
  const report = JSON.parse(status.stdout)
  assert.equal(report.plugin.entry, "oc-sync")
  assert.equal(report.plugin.installedForBareName, true)
  await runWithPlugin(m)
})

test("a broken option in the plugin tuple is logged as an error and OpenCode still works", async () => {
  const m = await createMachine("bad-options", { root: tmp.root, modelUrl: fake.url, plugins: [[`file://${unpacked}`, { conflictStrategy: "mine" }]] })
  const project = await m.projectDir("demo")
  const r = await m.opencode(["run", "--print-logs", "hi"], { cwd: project, timeoutMs: 90000 })
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout.trim(), DEFAULT_TEXT)
  assert.match(r.stderr, /level=ERROR.*invalid oc-sync config.*conflictStrategy/)
})
