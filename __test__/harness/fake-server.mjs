// A fake server binary of the workspace (fake-github, fake-opensync) as a child process: finds or
// builds the binary, starts it, waits for the `key=value` lines it prints, and stops it.
import { spawn, spawnSync } from "node:child_process"
import fs from "node:fs"
import path from "node:path"
import { repoRoot } from "./package.mjs"

/**
 * Path of the workspace binary `name`: $<envVar>, else target/debug or target/release (or
 * $CARGO_TARGET_DIR). When neither exists it is built with `cargo build -p <name>`; throws (never
 * skips) when that fails.
 */
export function resolveWorkspaceBin(name, envVar) {
  if (process.env[envVar]) {
    if (!fs.existsSync(process.env[envVar])) throw new Error(`${envVar}=${process.env[envVar]} does not exist`)
    return process.env[envVar]
  }
  const exe = process.platform === "win32" ? `${name}.exe` : name
  const target = process.env.CARGO_TARGET_DIR ? path.resolve(repoRoot, process.env.CARGO_TARGET_DIR) : path.join(repoRoot, "target")
  const candidates = ["debug", "release"].map((p) => path.join(target, p, exe))
  const found = candidates.find((p) => fs.existsSync(p))
  if (found) return found
  const r = spawnSync("cargo", ["build", "-p", name, "--bin", name], { cwd: repoRoot, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
  if (r.status !== 0) throw new Error(`cargo build -p ${name} failed (${r.status ?? r.error?.message}):\n${r.stderr}`)
  if (!fs.existsSync(candidates[0])) throw new Error(`cargo build -p ${name} succeeded but ${candidates[0]} does not exist`)
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
 * Starts `bin args` and waits (30 s at most) until it has printed a `key=value` line for every key
 * in `keys`. Returns { info (the printed values), pid, stderr(), close() }.
 */
export async function startServerBinary(bin, args, keys) {
  const name = path.basename(bin)
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] })
  live.add(child)
  let stdout = ""
  let stderr = ""
  child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d))
  const info = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`${name} did not print its url within 30 s; stderr:\n${stderr}`)), 30000)
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
    child.on("exit", (code, sig) => fail(new Error(`${name} exited early (${code ?? sig}); stderr:\n${stderr}`)))
    child.stdout.setEncoding("utf8").on("data", (d) => {
      stdout += d
      const kv = Object.fromEntries(
        stdout
          .split("\n")
          .filter((l) => l.includes("="))
          .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1).trim()]),
      )
      if (keys.every((k) => kv[k]) && stdout.endsWith("\n")) {
        clearTimeout(timer)
        child.removeAllListeners("exit")
        resolve(kv)
      }
    })
  })
  return {
    info,
    pid: child.pid,
    stderr: () => stderr,
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
