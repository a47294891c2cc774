// The project's fake OpenSync dashboard (the `fake-opensync` binary of the workspace crate
// fake-opensync/) as a child process, for end-to-end tests of the OpenSync export.
//
// The binary prints `url=…` and `key=…` on stdout and serves until SIGINT/SIGTERM. Helper routes
// (no auth, not recorded): GET /_fake/state → {sessions, messages, requests, key};
// POST /_fake/fault {"path":"<glob>","times":n,"status":s} (or "drop":true); POST /_fake/reset.
import { spawn, spawnSync } from "node:child_process"
import fs from "node:fs"
import path from "node:path"
import { repoRoot } from "./package.mjs"

const exe = process.platform === "win32" ? "fake-opensync.exe" : "fake-opensync"

/**
 * Path of the fake-opensync binary: $FAKE_OPENSYNC_BIN, else target/debug or target/release (or
 * $CARGO_TARGET_DIR). When neither exists it is built with `cargo build -p fake-opensync`; throws
 * (never skips) when that fails.
 */
export function resolveFakeOpensyncBin() {
  if (process.env.FAKE_OPENSYNC_BIN) {
    if (!fs.existsSync(process.env.FAKE_OPENSYNC_BIN)) throw new Error(`FAKE_OPENSYNC_BIN=${process.env.FAKE_OPENSYNC_BIN} does not exist`)
    return process.env.FAKE_OPENSYNC_BIN
  }
  const target = process.env.CARGO_TARGET_DIR ? path.resolve(repoRoot, process.env.CARGO_TARGET_DIR) : path.join(repoRoot, "target")
  const candidates = ["debug", "release"].map((p) => path.join(target, p, exe))
  const found = candidates.find((p) => fs.existsSync(p))
  if (found) return found
  const r = spawnSync("cargo", ["build", "-p", "fake-opensync", "--bin", "fake-opensync"], { cwd: repoRoot, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
  if (r.status !== 0) throw new Error(`cargo build -p fake-opensync failed (${r.status ?? r.error?.message}):\n${r.stderr}`)
  if (!fs.existsSync(candidates[0])) throw new Error(`cargo build -p fake-opensync succeeded but ${candidates[0]} does not exist`)
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
 * Start the fake OpenSync. Options: key (the one valid API key; default: a random osk_…),
 * port (default: any free one).
 * Returns { url, key, pid, stderr(), state(), fault({path, times, status|drop}), reset(), close() }.
 */
export async function startFakeOpensync({ key, port = 0 } = {}) {
  const bin = resolveFakeOpensyncBin()
  const args = ["--port", String(port)]
  if (key) args.push("--key", key)
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] })
  live.add(child)
  let stdout = ""
  let stderr = ""
  child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d))
  const info = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`fake-opensync did not print its url within 30 s; stderr:\n${stderr}`)), 30000)
    const fail = (err) => {
      clearTimeout(timer)
      try {
        child.kill("SIGKILL")
      } catch {
        /* gone */
      }
      live.delete(child)
      reject(err)
    }
    child.on("error", (e) => fail(new Error(`cannot spawn ${bin}: ${e.message}`)))
    child.on("exit", (code, sig) => fail(new Error(`fake-opensync exited early (${code ?? sig}); stderr:\n${stderr}`)))
    child.stdout.setEncoding("utf8").on("data", (d) => {
      stdout += d
      const kv = Object.fromEntries(
        stdout
          .split("\n")
          .filter((l) => l.includes("="))
          .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1).trim()]),
      )
      if (kv.url && kv.key && stdout.endsWith("\n")) {
        clearTimeout(timer)
        child.removeAllListeners("exit")
        resolve(kv)
      }
    })
  })
  const admin = async (method, route, body) => {
    const res = await fetch(`${info.url}/_fake/${route}`, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    const text = await res.text()
    if (!res.ok) throw new Error(`fake-opensync ${method} /_fake/${route} → ${res.status}: ${text}`)
    return JSON.parse(text)
  }
  return {
    url: info.url,
    key: info.key,
    pid: child.pid,
    stderr: () => stderr,
    /** { sessions, messages, requests, key } as the fake holds them now. */
    state: () => admin("GET", "state"),
    /** Make the next `times` requests whose path matches the glob answer `status` (or be dropped). */
    fault: ({ path: glob, times = 1, status, drop } = {}) => admin("POST", "fault", { path: glob, times, ...(status !== undefined ? { status } : {}), ...(drop ? { drop: true } : {}) }),
    /** Forget sessions, messages, requests and faults. */
    reset: () => admin("POST", "reset", {}),
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
