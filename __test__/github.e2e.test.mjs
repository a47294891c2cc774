// The GitHub remote inside the real OpenCode 1.18.33: two machines (own HOMEs) that only run
// `opencode run` meet in octo-user/.opencode-sync on the project's fake GitHub (the fake-github
// binary, real bare git repos underneath). No OC_SYNC_REMOTE: a GITHUB_TOKEN alone selects GitHub.
// Also: the token never reaches a log or the cache file, and an unreachable GitHub costs nothing.
import { test, before, after } from "node:test"
import assert from "node:assert/strict"
import fs from "node:fs"
import path from "node:path"
import { spawnSync } from "node:child_process"
import { startFakeModel, startFakeGithub, closedPort, createMachine, makeTempRoot, resolveOpencodeBin, resolveFakeGithubBin, packPlugin, DEFAULT_TEXT } from "./harness/index.mjs"

const HANG_MS = 30000 // healthy runs take a few seconds; this only catches hangs
const TOKEN = "ghp_e2eFakeTokenDoNotLeak0123456789abcd" // recognisable, so a leak is easy to find
const OWNER = "octo-user"
const REPO = ".opencode-sync"

let tmp, fake, gh, pkg
const machines = {} // name → machine, shared by the tests below
const runs = {} // name → [results of opencode run]

before(
  async () => {
    resolveOpencodeBin() // fails (never skips) when OpenCode is missing
    resolveFakeGithubBin() // builds it with cargo when missing; fails (never skips) when it cannot
    tmp = makeTempRoot("oc-sync-github-")
    fake = await startFakeModel()
    gh = await startFakeGithub({ root: path.join(tmp.root, "github"), token: TOKEN, login: OWNER })
    assert.equal(gh.token, TOKEN)
    pkg = await packPlugin(tmp.root)
  },
  { timeout: 15 * 60 * 1000 }, // a cold `cargo build -p fake-github` may take minutes
)

after(async () => {
  await gh?.close()
  await fake?.close()
  tmp?.cleanup()
})

async function machine(name, env = {}) {
  const m = await createMachine(name, {
    root: tmp.root,
    modelUrl: fake.url,
    plugins: [`file://${pkg.dir}`],
    // No OC_SYNC_REMOTE: the token alone makes GitHub the remote.
    env: { GITHUB_TOKEN: TOKEN, GITHUB_API_URL: gh.url, OC_SYNC_GITHUB_RETRY_MS: "50", ...env },
  })
  machines[name] = m
  return m
}

function write(m, rel, text) {
  const p = path.join(m.opencodeDirs.config, rel)
  fs.mkdirSync(path.dirname(p), { recursive: true })
  fs.writeFileSync(p, text)
}

function readBytes(m, rel) {
  try {
    return fs.readFileSync(path.join(m.opencodeDirs.config, rel))
  } catch {
    return null
  }
}

/** oc-sync's own log files of a machine: [[file, text]]. */
function ocSyncLogs(m) {
  const dir = path.join(m.dirs.state, "oc-sync", "log")
  if (!fs.existsSync(dir)) return []
  return fs
    .readdirSync(dir)
    .sort()
    .map((f) => [path.join(dir, f), fs.readFileSync(path.join(dir, f), "utf8")])
}

function diagnostics(m) {
  const logs = ocSyncLogs(m)
    .map(([f, t]) => `--- ${f}\n${t}`)
    .join("\n")
  return `${logs}\n--- fake-github stderr\n${gh.stderr()}`
}

async function runOpencode(m) {
  m.project ??= await m.projectDir("demo")
  const r = await m.opencode(["run", "--print-logs", "hi"], { cwd: m.project, timeoutMs: 90000 })
  ;(runs[m.name] ??= []).push(r)
  assert.equal(r.timedOut, false, r.stderr)
  assert.equal(r.code, 0, `opencode run failed:\n${r.stderr}`)
  assert.ok(r.ms < HANG_MS, `opencode run took ${r.ms} ms`)
  assert.equal(r.stdout.trim(), DEFAULT_TEXT, "the plugin printed nothing on stdout")
  assert.doesNotMatch(r.stderr, /failed to load plugin/)
  assert.match(r.stderr, /message="oc-sync stopped"/)
  return r
}

function tree() {
  const r = spawnSync("git", ["--git-dir", gh.gitDir(OWNER, REPO), "ls-tree", "-r", "--name-only", "main"], { encoding: "utf8" })
  return r.status === 0 ? r.stdout : `(git ls-tree failed: ${r.stderr})`
}

const AGENT = "# Reviewer\nReview carefully.\n"
const AGENTS_MD = "Always write tests.\r\nNo trailing newline on purpose: ünïcödé"

test("OpenCode on A pushes to GitHub and OpenCode on B pulls it", async (t) => {
  const a = await machine("a")
  const b = await machine("b")
  write(a, "agents/review.md", AGENT)
  write(a, "AGENTS.md", AGENTS_MD)
  assert.equal(fs.existsSync(gh.gitDir(OWNER, REPO)), false, "the sync repository does not exist before the first sync")

  const ra = await runOpencode(a)
  // The first sync created the private repository and pushed A's files into it.
  assert.ok(fs.existsSync(gh.gitDir(OWNER, REPO)), `no ${OWNER}/${REPO} on the fake GitHub\n${ra.stderr}\n${diagnostics(a)}`)
  assert.equal(gh.item(OWNER, REPO, "main:config/agents/review.md"), AGENT, `remote tree:\n${tree()}\n${diagnostics(a)}`)
  assert.equal(gh.item(OWNER, REPO, "main:config/AGENTS.md"), AGENTS_MD, `remote tree:\n${tree()}`)
  const meta = await fetch(`${gh.url}/repos/${OWNER}/${REPO}`, { headers: { authorization: `Bearer ${TOKEN}`, accept: "application/vnd.github+json" } })
  assert.equal(meta.status, 200)
  assert.equal((await meta.json()).private, true, "the sync repository was created private")
  const logA = ocSyncLogs(a).map(([, t]) => t).join("")
  assert.match(logA, /created the private repository octo-user\/\.opencode-sync/)
  assert.match(logA, /sync: pushed [1-9]/)

  // B only runs OpenCode: the startup sync pulls, dispose waits for it.
  const rb = await runOpencode(b)
  assert.deepEqual(readBytes(b, "agents/review.md"), Buffer.from(AGENT), `${rb.stderr}\n${diagnostics(b)}`)
  assert.deepEqual(readBytes(b, "AGENTS.md"), Buffer.from(AGENTS_MD))
  assert.match(ocSyncLogs(b).map(([, t]) => t).join(""), /sync: pushed \d+, pulled ([2-9]|\d{2,})/)
  t.diagnostic(`opencode run: A ${ra.ms} ms, B ${rb.ms} ms`)
})

test("no token leaks: not in oc-sync's logs, not in OpenCode's logs, not in the GitHub cache file (mode 0600)", async () => {
  assert.ok(machines.a && machines.b, "needs the machines of the first test")
  for (const m of [machines.a, machines.b]) {
    const logs = ocSyncLogs(m)
    assert.ok(logs.length > 0, `${m.name}: no oc-sync log file`)
    for (const [file, text] of logs) {
      assert.ok(text.length > 0, `${file} is empty`)
      assert.equal(text.includes(TOKEN), false, `${file} contains the token`)
    }
    for (const r of runs[m.name]) {
      assert.equal(r.stderr.includes(TOKEN), false, `${m.name}: opencode --print-logs output contains the token`)
      assert.equal(r.stdout.includes(TOKEN), false)
    }
    assert.equal(m.readOpencodeLogs().includes(TOKEN), false, `${m.name}: opencode.log contains the token`)
    const cache = path.join(m.dirs.state, "oc-sync", "github.json")
    assert.ok(fs.existsSync(cache), `${m.name}: ${cache} missing`)
    assert.equal(fs.readFileSync(cache, "utf8").includes(TOKEN), false, `${cache} contains the token`)
    if (process.platform !== "win32") assert.equal(fs.statSync(cache).mode & 0o777, 0o600, `${cache} mode`)
  }
  // Nothing the engine wrote anywhere under either HOME holds the token.
  for (const m of [machines.a, machines.b]) {
    const hits = []
    const walk = (d) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name)
        if (e.isDirectory()) walk(p)
        else if (e.isFile() && fs.statSync(p).size < 50 * 1024 * 1024 && fs.readFileSync(p).includes(TOKEN)) hits.push(p)
      }
    }
    walk(m.home)
    assert.deepEqual(hits, [], `${m.name}: files holding the token`)
  }
  // Nor does the synced repository.
  const grep = spawnSync("git", ["--git-dir", gh.gitDir(OWNER, REPO), "grep", "-F", TOKEN, "main"], { encoding: "utf8" })
  assert.equal(grep.status, 1, `the sync repository contains the token:\n${grep.stdout}`)
})

test("GitHub unreachable costs nothing: opencode run exits 0 quickly with the answer", async (t) => {
  const port = await closedPort()
  const c = await machine("c", { GITHUB_API_URL: `http://127.0.0.1:${port}` })
  write(c, "agents/offline.md", "made offline\n")
  const r = await runOpencode(c)
  assert.ok(r.ms < HANG_MS, `took ${r.ms} ms`)
  t.diagnostic(`opencode run with GitHub unreachable: ${r.ms} ms`)
  assert.equal(r.stderr.includes(TOKEN), false)
  for (const [file, text] of ocSyncLogs(c)) assert.equal(text.includes(TOKEN), false, `${file} contains the token`)
})
