// The real OpenCode 1.18.33 terminal UI, driven in tmux, with the packed oc-sync plugin: the person
// sees the model's answer, oc-sync's slash commands answer on screen without the model, and
// oc-sync's toast shows. Also the agent's tools, through `opencode run`.
// Needs tmux (scripts/setup.sh installs it): without it these tests fail, they never skip.
import { test, before, after } from "node:test"
import assert from "node:assert/strict"
import { spawnSync } from "node:child_process"
import fs from "node:fs"
import path from "node:path"
import { startFakeModel, startFakeGithub, createMachine, makeTempRoot, resolveOpencodeBin, packPlugin, toolThenText, DEFAULT_TEXT } from "./harness/index.mjs"

const COLS = 120
const ROWS = 40
const RENDER_MS = 90000 // the first frame takes ~20 s on a loaded 2-core machine

let tmp, fake, unpacked

before(async () => {
  const v = spawnSync("tmux", ["-V"], { encoding: "utf8" })
  if (v.status !== 0) throw new Error(`tmux is not installed (${v.error?.message ?? v.stderr}): the TUI tests need it; run \`bash scripts/setup.sh\` or \`apt-get install tmux\``)
  resolveOpencodeBin()
  tmp = makeTempRoot("oc-sync-tui-")
  fake = await startFakeModel()
  ;({ dir: unpacked } = await packPlugin(tmp.root))
})

after(async () => {
  await fake?.close()
  tmp?.cleanup()
})

/** A conflict that waits for the person (strategy "ask"), with its two copies, as oc-sync records it. */
function writeWaitingConflict(m, key, { local, remote }) {
  const id = "1795000000000-abcdef12"
  const dir = path.join(m.dirs.data, "oc-sync", "conflicts", id)
  const name = path.basename(key)
  fs.mkdirSync(path.join(dir, "local"), { recursive: true })
  fs.mkdirSync(path.join(dir, "remote"), { recursive: true })
  fs.writeFileSync(path.join(dir, "local", name), local)
  fs.writeFileSync(path.join(dir, "remote", name), remote)
  fs.writeFileSync(
    path.join(dir, "meta.json"),
    JSON.stringify({
      id, key, created_ms: 1795000000000, strategy: "ask", winner: "none", needs_person: true, resolved: null,
      local_clock: { a: 1 }, remote_clock: { b: 1 }, local_machine: "a", remote_machine: "b",
      details: ["both machines changed it"], dir,
    }),
  )
}

/** OpenCode's TUI in a detached tmux session on a private tmux server, with the machine's environment. */
function startTui(m, cwd) {
  const socket = `oc-sync-tui-${process.pid}-${m.name}`
  const env = m.env({ TERM: "xterm-256color" })
  const tmux = (...args) => {
    const r = spawnSync("tmux", ["-L", socket, ...args], { env, encoding: "utf8", timeout: 10000 })
    if (r.status !== 0) throw new Error(`tmux ${args.join(" ")} failed: ${r.stderr || r.error?.message}`)
    return r.stdout
  }
  tmux("new-session", "-d", "-s", "oc", "-x", String(COLS), "-y", String(ROWS), "-c", cwd, m.bin)
  const screen = () => tmux("capture-pane", "-p", "-t", "oc")
  return {
    screen,
    type: (text) => tmux("send-keys", "-t", "oc", "-l", text),
    key: (name) => tmux("send-keys", "-t", "oc", name),
    /** Polls the screen until `test(screen)` holds; fails with the last screen after `timeoutMs`. */
    async waitFor(what, check, timeoutMs = 30000) {
      const t0 = Date.now()
      let last = ""
      while (Date.now() - t0 < timeoutMs) {
        last = screen()
        if (check(last)) return last
        await new Promise((r) => setTimeout(r, 250))
      }
      assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}; the screen:\n${last}`)
    },
    /** Ends the tmux server and waits (at most 10 s, then SIGKILL) for OpenCode to exit. */
    async kill() {
      const pid = Number(spawnSync("tmux", ["-L", socket, "display-message", "-p", "-t", "oc", "#{pane_pid}"], { env, encoding: "utf8" }).stdout)
      spawnSync("tmux", ["-L", socket, "kill-server"], { env, timeout: 10000 })
      const alive = () => {
        try {
          return pid > 0 && process.kill(pid, 0)
        } catch {
          return false
        }
      }
      for (let i = 0; i < 100 && alive(); i++) await new Promise((r) => setTimeout(r, 100))
      if (alive()) process.kill(pid, "SIGKILL")
    },
  }
}

/** Runs a slash command: the first Enter picks it in the autocomplete list, the second sends it. */
async function slash(tui, name) {
  tui.type(`/${name}`)
  await tui.waitFor(`/${name} in the autocomplete list`, (s) => s.includes(`oc-sync:`))
  tui.key("Enter")
  await new Promise((r) => setTimeout(r, 500))
  tui.key("Enter")
}

test("in the TUI: the model answers, /sync-status and /sync-conflicts answer without it, the conflict toast shows", async () => {
  const remote = path.join(tmp.root, "remote")
  const m = await createMachine("tui", { root: tmp.root, modelUrl: fake.url, plugins: [`file://${unpacked}`], env: { OC_SYNC_REMOTE: remote } })
  writeWaitingConflict(m, "config/AGENTS.md", { local: "# here\n", remote: "# there\n" })
  const project = await m.projectDir("demo")
  const tui = startTui(m, project)
  try {
    await tui.waitFor("the TUI's first frame", (s) => s.includes("Ask anything"), RENDER_MS)

    // (a) A prompt reaches the fake model and its answer shows, with the plugin loaded; (c) oc-sync's
    // toast for the conflict waiting for the person shows (at the latest once the session starts:
    // a toast sent while the TUI was still starting is lost).
    tui.type("hello there")
    tui.key("Enter")
    let toast = false
    await tui.waitFor("the model's answer and oc-sync's conflict toast", (s) => {
      toast ||= /sync conflict needs you/.test(s) && s.includes("config/AGENTS.md")
      return toast && s.includes(DEFAULT_TEXT)
    }, 60000)
    const asked = fake.chatRequests().length
    assert.ok(asked >= 1)

    // (b) /sync-status shows oc-sync's status in the session; the model is not called.
    await slash(tui, "sync-status")
    const status = await tui.waitFor("the /sync-status answer", (s) => s.includes("oc-sync is running in this OpenCode") && /remote\s+local /.test(s), 60000)
    assert.match(status, /last sync/)
    // /sync-conflicts lists the waiting conflict and says how to settle it.
    await slash(tui, "sync-conflicts")
    const conflicts = await tui.waitFor("the /sync-conflicts answer", (s) => s.includes("WAITING FOR YOU") && s.includes("/sync-conflicts KEY local"), 30000)
    assert.match(conflicts, /config\/AGENTS\.md/)
    assert.equal(fake.chatRequests().length, asked, "a slash command of oc-sync called the model")
  } finally {
    await tui.kill()
  }
})

/** The auto-sync scheduler's state the plugin writes for `oc-sync status`, or null. */
function scheduler(m) {
  try {
    return JSON.parse(fs.readFileSync(path.join(m.dirs.state, "oc-sync", "autosync.json"), "utf8")).scheduler
  } catch {
    return null
  }
}

test("in the TUI: a rejected GitHub token shows one toast with what to do, not one per retry", async () => {
  const gh = await startFakeGithub({ root: path.join(tmp.root, "github"), token: "ghp_theRightTokenForTheFakeGithub00" })
  const m = await createMachine("tui-401", {
    root: tmp.root,
    modelUrl: fake.url,
    plugins: [`file://${unpacked}`],
    // No OC_SYNC_REMOTE: the token makes GitHub the remote, and GitHub answers 401 to it.
    env: { GITHUB_TOKEN: "ghp_aRevokedTokenThatGithubRejects00", GITHUB_API_URL: gh.url, OC_SYNC_GITHUB_RETRY_MS: "50" },
  })
  fs.writeFileSync(path.join(m.opencodeDirs.config, "AGENTS.md"), "# one\n")
  const project = await m.projectDir("demo")
  const tui = startTui(m, project)
  // The toast's text, wrapped in its box: compare with the box and line breaks taken out.
  const flat = (s) => s.replace(/[┃│╹▀\s]+/g, " ")
  const toastShown = (s) => flat(s).includes("oc-sync: not syncing")
  try {
    await tui.waitFor("the TUI's first frame", (s) => s.includes("Ask anything"), RENDER_MS)
    tui.type("hello there")
    tui.key("Enter")
    const screen = await tui.waitFor("oc-sync's toast for the rejected token", toastShown, 60000)
    assert.match(flat(screen), /GitHub rejected the token/, screen)
    const failedSyncs = scheduler(m)?.totalSyncs ?? 0
    assert.ok(failedSyncs >= 1, `the startup sync ran: ${JSON.stringify(scheduler(m))}`)
    // The toast goes away (15 s); a change makes auto-sync try again, which fails the same way:
    // no second toast.
    await tui.waitFor("the toast to go away", (s) => !toastShown(s), 30000)
    fs.writeFileSync(path.join(m.opencodeDirs.config, "AGENTS.md"), "# two\n")
    const t0 = Date.now()
    let again = false
    while (Date.now() - t0 < 20000) {
      again ||= toastShown(tui.screen())
      await new Promise((r) => setTimeout(r, 250))
    }
    const s = scheduler(m)
    assert.ok((s?.totalSyncs ?? 0) > failedSyncs, `auto-sync tried again: ${JSON.stringify(s)}`)
    assert.match(s?.lastError ?? "", /token|401|credentials/i)
    assert.equal(again, false, "the same failure was toasted again at the retry")
  } finally {
    await tui.kill()
    await gh.close()
  }
})

test("the agent's tools report the status and settle a conflict (opencode run)", async () => {
  const remote = path.join(tmp.root, "remote-tools")
  const m = await createMachine("tools", { root: tmp.root, modelUrl: fake.url, plugins: [`file://${unpacked}`], env: { OC_SYNC_REMOTE: remote } })
  writeWaitingConflict(m, "config/AGENTS.md", { local: "# here\n", remote: "# there\n" })
  const project = await m.projectDir("demo")
  try {
    fake.setScript(toolThenText({ name: "oc_sync", args: { action: "conflicts" } }, "Listed."))
    let r = await m.opencode(["run", "--print-logs", "what conflicts wait?"], { cwd: project, timeoutMs: 90000 })
    assert.equal(r.code, 0, r.stderr)
    const listed = fake.chatRequests().at(-1).messages.filter((x) => x.role === "tool").map((x) => JSON.stringify(x.content)).join("\n")
    assert.match(listed, /config\/AGENTS\.md: WAITING FOR YOU/)

    fake.setScript(toolThenText({ name: "oc_sync_resolve", args: { key: "config/AGENTS.md", keep: "remote" } }, "Settled."))
    r = await m.opencode(["run", "--print-logs", "keep the other machine's AGENTS.md"], { cwd: project, timeoutMs: 90000 })
    assert.equal(r.code, 0, r.stderr)
    const settled = fake.chatRequests().at(-1).messages.filter((x) => x.role === "tool").map((x) => JSON.stringify(x.content)).join("\n")
    assert.match(settled, /config\/AGENTS\.md now holds the remote version/)
    assert.equal(fs.readFileSync(path.join(m.opencodeDirs.config, "AGENTS.md"), "utf8"), "# there\n")
  } finally {
    fake.setScript(undefined)
  }
})
