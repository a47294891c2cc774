// The project's fake GitHub (the `fake-github` binary of the workspace crate fake-github/) as a child
// process, for end-to-end tests of the GitHub remote with the real OpenCode binary.
//
// The binary prints `url=…`, `token=…`, `root=…` on stdout and serves until SIGINT/SIGTERM.
// Repositories are real bare git repos under <root>/<owner>/<name>.git.
import { spawn, spawnSync } from "node:child_process"
import fs from "node:fs"
import net from "node:net"
import path from "node:path"
import { repoRoot } from "./package.mjs"

const exe = process.platform === "win32" ? "fake-github.exe" : "fake-github"

/**
 * Path of the fake-github binary: target/debug or target/release (or $CARGO_TARGET_DIR). When neither
 * exists it is built with `cargo build -p fake-github`; throws (never skips) when that fails.
 */
export function resolveFakeGithubBin() {
  if (process.env.FAKE_GITHUB_BIN) {
    if (!fs.existsSync(process.env.FAKE_GITHUB_BIN)) throw new Error(`FAKE_GITHUB_BIN=${process.env.FAKE_GITHUB_BIN} does not exist`)
    return process.env.FAKE_GITHUB_BIN
  }
  const target = process.env.CARGO_TARGET_DIR ? path.resolve(repoRoot, process.env.CARGO_TARGET_DIR) : path.join(repoRoot, "target")
  const candidates = ["debug", "release"].map((p) => path.join(target, p, exe))
  const found = candidates.find((p) => fs.existsSync(p))
  if (found) return found
  const r = spawnSync("cargo", ["build", "-p", "fake-github", "--bin", "fake-github"], { cwd: repoRoot, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
  if (r.status !== 0) throw new Error(`cargo build -p fake-github failed (${r.status ?? r.error?.message}):\n${r.stderr}`)
  if (!fs.existsSync(candidates[0])) throw new Error(`cargo build -p fake-github succeeded but ${candidates[0]} does not exist`)
  return candidates[0]
}

const live = new Set()
process.once("exit", () => {
  for (const child of live) {
    try {
      child.kill("SIGKILL")
    } catch {
      /* gone */
    }
  }
})

/**
 * Start the fake GitHub. Options: root (dir for its bare repos, required), token, login, repos
 * (["owner/name" or "owner/name:public"]), port (default: any free one).
 * Returns { url, token, root, login, pid, gitDir(owner, name), show(owner, name, "rev:path"), close() }.
 */
export async function startFakeGithub({ root, token, login, repos = [], port = 0 } = {}) {
  if (!root) throw new Error("startFakeGithub: root is required")
  fs.mkdirSync(root, { recursive: true })
  const bin = resolveFakeGithubBin()
  const args = ["--port", String(port), "--root", root]
  if (token) args.push("--token", token)
  if (login) args.push("--login", login)
  for (const r of repos) args.push("--repo", r)
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] })
  live.add(child)
  let stdout = ""
  let stderr = ""
  child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d))
  const info = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`fake-github did not print its url within 30 s; stderr:\n${stderr}`)), 30000)
    const fail = (err) => {
      clearTimeout(timer)
      try {
        child.kill("SIGKILL")
      } catch {
        /* gone */
      }
      reject(err)
    }
    child.on("error", (e) => fail(new Error(`cannot spawn ${bin}: ${e.message}`)))
    child.on("exit", (code, sig) => fail(new Error(`fake-github exited early (${code ?? sig}); stderr:\n${stderr}`)))
    child.stdout.setEncoding("utf8").on("data", (d) => {
      stdout += d
      const kv = Object.fromEntries(
        stdout
          .split("\n")
          .filter((l) => l.includes("="))
          .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1).trim()]),
      )
      if (kv.url && kv.token && kv.root && stdout.endsWith("\n")) {
        clearTimeout(timer)
        child.removeAllListeners("exit")
        resolve(kv)
      }
    })
  })
  const gitDir = (owner, name) => path.join(info.root, owner, `${name}.git`)
  return {
    url: info.url,
    token: info.token,
    root: info.root,
    login: login ?? "octo-user",
    pid: child.pid,
    stderr: () => stderr,
    gitDir,
    /** `git --git-dir <repo> show <spec>` → text, or null when it fails (no repo, no such path). */
    show(owner, name, spec) {
      const r = spawnSync("git", ["--git-dir", gitDir(owner, name), "show", spec], { encoding: "utf8" })
      return r.status === 0 ? r.stdout : null
    },
    close() {
      return new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) {
          live.delete(child)
          return resolve()
        }
        const hard = setTimeout(() => child.kill("SIGKILL"), 5000)
        child.once("exit", () => {
          clearTimeout(hard)
          live.delete(child)
          resolve()
        })
        child.kill("SIGINT")
      })
    },
  }
}

/** A loopback port that nothing listens on (a server is bound to it and closed again). */
export function closedPort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.on("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}
