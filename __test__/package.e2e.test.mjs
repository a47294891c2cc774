// The released packages, end to end: scripts/pack.mjs makes the tarballs npm would publish (the main
// package and this platform's package with the native module built by scripts/setup.sh); they are
// installed with npm (offline, never the work tree) on machines with a clean HOME, the ways the
// README documents, and the real OpenCode 1.18.33 loads oc-sync from each and syncs between them.
// The machines that sync together all use the bare name "oc-sync" (opencode.json is synced, so a
// file:// URL on one machine would reach the others); opencode.e2e.test.mjs loads a file:// URL.
import { test, before, after } from "node:test"
import assert from "node:assert/strict"
import { execFileSync } from "node:child_process"
import fs from "node:fs"
import path from "node:path"
import {
  startFakeModel,
  createMachine,
  makeTempRoot,
  resolveOpencodeBin,
  packTarballs,
  npmInstallPacked,
  platformPackageName,
  repoRoot,
  spawnCollect,
  DEFAULT_TEXT,
} from "./harness/index.mjs"

const HANG_MS = 60000 // a healthy run takes 3-8 s (much more on a loaded machine); this only catches hangs
const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, "package.json"), "utf8"))
const PLATFORMS = ["linux-x64-gnu", "linux-arm64-gnu", "darwin-x64", "darwin-arm64", "win32-x64-msvc"]

let tmp, fake, packed

before(async () => {
  resolveOpencodeBin() // fails (never skips) when OpenCode is missing
  tmp = makeTempRoot("oc-sync-package-")
  fake = await startFakeModel()
  packed = packTarballs(path.join(tmp.root, "pack"))
})

after(async () => {
  await fake?.close()
  tmp?.cleanup()
})

function tarList(tarball) {
  return execFileSync("tar", ["-tzf", tarball], { encoding: "utf8" }).trim().split("\n").map((f) => f.replace(/^package\//, "")).sort()
}

function tarJson(tarball, file) {
  return JSON.parse(execFileSync("tar", ["-xzOf", tarball, `package/${file}`], { encoding: "utf8" }))
}

test("the main tarball holds the shim, launcher and types, names every platform package, and ships no native module", () => {
  const files = tarList(packed.main)
  assert.deepEqual(files, ["README.md", "bin/oc-sync.js", "index.d.ts", "index.js", "package.json", "server.d.ts", "server.mjs"])
  const manifest = tarJson(packed.main, "package.json")
  // Everything the manifest points at is in the tarball.
  const targets = [manifest.main, manifest.types, ...Object.values(manifest.bin), ...Object.values(manifest.exports).flatMap((e) => (typeof e === "string" ? [e] : Object.values(e)))]
  for (const t of targets) assert.ok(files.includes(path.posix.normalize(t)), `package.json points at ${t}, which is not packed`)
  assert.deepEqual(manifest.optionalDependencies, Object.fromEntries(PLATFORMS.map((p) => [`oc-sync-${p}`, pkg.version])))
  assert.equal(manifest.scripts?.postinstall, undefined, "OpenCode installs plugins with scripts ignored: nothing may depend on one")
})

test("the platform tarball holds the native module its manifest names, for its os, cpu and libc", () => {
  const name = platformPackageName()
  const file = `oc-sync.${name.slice("oc-sync-".length)}.node`
  assert.deepEqual(tarList(packed.platform), ["README.md", file, "package.json"].sort())
  const manifest = tarJson(packed.platform, "package.json")
  assert.equal(manifest.name, name)
  assert.equal(manifest.version, pkg.version)
  assert.equal(manifest.main, file)
  assert.deepEqual(manifest.os, [process.platform])
  assert.deepEqual(manifest.cpu, [process.arch])
  if (process.platform === "linux") assert.deepEqual(manifest.libc, ["glibc"])
})

/** `opencode run hi` with the plugin; checks it loaded, synced at startup and printed nothing. */
async function runOpencode(m) {
  m.project ??= await m.projectDir("demo")
  const r = await m.opencode(["run", "--print-logs", "hi"], { cwd: m.project, timeoutMs: 90000 })
  assert.equal(r.timedOut, false, r.stderr)
  assert.equal(r.code, 0, `opencode run failed:\n${r.stderr}`)
  assert.ok(r.ms < HANG_MS, `opencode run took ${r.ms} ms`)
  assert.equal(r.stdout.trim(), DEFAULT_TEXT, "the plugin printed nothing on stdout")
  assert.doesNotMatch(r.stderr, /failed to load plugin|cannot load the native module/)
  assert.match(r.stderr, new RegExp(`oc-sync ${pkg.version.replace(/\./g, "\\.")} loaded \\(machine `))
  assert.match(r.stderr, /message="oc-sync stopped"/)
  return r
}

function machine(name, remote, plugins) {
  return createMachine(name, { root: tmp.root, modelUrl: fake.url, plugins, env: { OC_SYNC_REMOTE: remote } })
}

function readConfig(m, rel) {
  const p = path.join(m.opencodeDirs.config, rel)
  return fs.existsSync(p) ? fs.readFileSync(p, "utf8") : null
}

test("installed from the tarballs on clean machines (npm -g, OpenCode's cache, npm in the config dir), OpenCode loads oc-sync and syncs between them", async () => {
  const remote = path.join(tmp.root, "remote")

  // A, the Quick start: `npm install -g oc-sync && oc-sync install`, npm's prefix inside A's HOME.
  const a = await machine("a-global", remote, [])
  const prefix = path.join(a.home, ".npm-global")
  await npmInstallPacked(packed.tarballs, { global: true, prefix, cwd: a.home, run: a.run })
  const launcher = path.join(prefix, "bin", "oc-sync")
  const version = await a.run(launcher, ["--version"])
  assert.equal(version.code, 0, version.stderr)
  assert.match(version.stdout, new RegExp(`oc-sync ${pkg.version.replace(/\./g, "\\.")}`))
  const install = await a.run(launcher, ["install"])
  assert.equal(install.code, 0, install.stderr)
  assert.match(install.stdout, /add "oc-sync" to "plugin"/)

  // B, way 1: OpenCode's own package cache, as OpenCode's install of the bare name leaves it.
  const b = await machine("b-bare-name", remote, ["oc-sync"])
  const cache = path.join(b.dirs.cache, "opencode", "packages", "oc-sync@latest")
  fs.mkdirSync(cache, { recursive: true })
  await npmInstallPacked(packed.tarballs, { cwd: cache, run: b.run })

  // C, way 3 in OpenCode's config dir: `npm install oc-sync && npx oc-sync install`.
  const c = await machine("c-config-dir", remote, [])
  await npmInstallPacked(packed.tarballs, { cwd: c.opencodeDirs.config, registry: true, run: c.run })
  const registered = await c.run(path.join(c.opencodeDirs.config, "node_modules", ".bin", "oc-sync"), ["install"])
  assert.equal(registered.code, 0, registered.stderr)

  a.writeConfigFile("agents/review.md", "# Reviewer\nfrom A\n")
  await runOpencode(a)
  await runOpencode(b)
  assert.equal(readConfig(b, "agents/review.md"), "# Reviewer\nfrom A\n")
  await runOpencode(c)
  assert.equal(readConfig(c, "agents/review.md"), "# Reviewer\nfrom A\n")
  c.writeConfigFile("commands/deploy.md", "deploy from C\n")
  await runOpencode(c)
  await runOpencode(a)
  assert.equal(readConfig(a, "commands/deploy.md"), "deploy from C\n")
})

test("without the platform package the launcher says what is missing and what to do", async () => {
  const m = await machine("no-native", path.join(tmp.root, "remote-none"), [])
  const dir = path.join(m.home, "app")
  fs.mkdirSync(dir)
  await npmInstallPacked([packed.main], { cwd: dir, run: m.run })
  assert.equal(fs.existsSync(path.join(dir, "node_modules", platformPackageName())), false)
  const r = await m.run(path.join(dir, "node_modules", ".bin", "oc-sync"), ["--version"])
  assert.equal(r.code, 1)
  assert.equal(r.stdout, "")
  assert.match(r.stderr, new RegExp(`cannot load the native module for ${process.platform}-${process.arch}`))
  assert.match(r.stderr, /Reinstall with `npm install oc-sync` \(with optional dependencies enabled\)/)
})

test("the glibc check passes the built module at its floor and fails, naming the symbols, below it", async () => {
  const module = path.join(repoRoot, `oc-sync.${platformPackageName().slice("oc-sync-".length)}.node`)
  const ok = await spawnCollect("bash", [path.join(repoRoot, "scripts", "check-glibc.sh"), module], { env: { ...process.env, GLIBC_FLOOR: "2.17" } })
  assert.equal(ok.code, 0, ok.stderr)
  assert.match(ok.stdout, /needs glibc 2\.17 at most \(floor 2\.17\): ok/)
  const low = await spawnCollect("bash", [path.join(repoRoot, "scripts", "check-glibc.sh"), module], { env: { ...process.env, GLIBC_FLOOR: "2.16" } })
  assert.equal(low.code, 1)
  assert.match(low.stderr, /needs glibc 2\.17, above the floor 2\.16; these symbols are too new:\n  GLIBC_2\.17 \S+/)
})
