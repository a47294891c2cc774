// Packs oc-sync exactly as it is released (scripts/pack.mjs: the main package and this platform's
// package with the locally built native module) and installs the tarballs with npm, so end-to-end
// tests load what users install, never the work tree.
import assert from "node:assert/strict"
import fs from "node:fs"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { spawnCollect } from "./machine.mjs"
import { pack } from "../../scripts/pack.mjs"

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")

/** The platform package this machine installs, e.g. "oc-sync-linux-x64-gnu". */
export function platformPackageName() {
  const abi = process.platform === "linux" ? "-gnu" : process.platform === "win32" ? "-msvc" : ""
  return `oc-sync-${process.platform}-${process.arch}${abi}`
}

/** Packs into `out`. Returns { main, platform, tarballs } (paths; platform = this machine's package). */
export function packTarballs(out) {
  const { tarballs } = pack({ out })
  const platform = tarballs.find((t) => path.basename(t).startsWith(`${platformPackageName()}-`))
  assert.ok(platform, `no ${platformPackageName()} tarball among ${tarballs}; run: npm run build`)
  return { main: tarballs[0], platform, tarballs }
}

/**
 * `npm install --offline` of the tarballs in `cwd`, or with `global: true` into the npm prefix `prefix`.
 * Nothing comes from the registry: the tarballs, and npm's cache (filled by `npm ci`) for anything
 * else the folder needs. OpenCode's config dir also names @opencode-ai/plugin, whose registry
 * metadata `npm ci` does not cache: there pass `registry: true` (--prefer-offline; the registry only
 * answers for that and for the other platforms' packages, which npm skips). `run` runs a command (default: spawnCollect; pass a machine's `run` to
 * install with that machine's HOME). Fails the test when npm fails.
 */
export async function npmInstallPacked(tarballs, { cwd, global = false, prefix, registry = false, run = defaultRun } = {}) {
  const args = ["install", registry ? "--prefer-offline" : "--offline", "--no-audit", "--no-fund", ...(global ? ["--global"] : []), ...tarballs]
  const env = {
    npm_config_cache: process.env.npm_config_cache ?? path.join(os.homedir(), ".npm"),
    npm_config_update_notifier: "false",
    ...(prefix ? { npm_config_prefix: prefix } : {}),
  }
  const r = await run("npm", args, { cwd, env, timeoutMs: 180000 })
  assert.equal(r.code, 0, `npm ${args.join(" ")} failed:\n${r.stderr}`)
  return r
}

function defaultRun(cmd, args, { cwd, env, timeoutMs }) {
  return spawnCollect(cmd, args, { cwd, env: { ...process.env, ...env }, timeoutMs })
}

/**
 * Packs oc-sync and npm-installs the tarballs into `destRoot/installed`.
 * Returns { tarball (the main package), tarballs, dir (the installed oc-sync package) }.
 */
export async function packPlugin(destRoot) {
  const { main, tarballs } = packTarballs(path.join(destRoot, "pack"))
  const cwd = path.join(destRoot, "installed")
  fs.mkdirSync(cwd, { recursive: true })
  await npmInstallPacked(tarballs, { cwd })
  const dir = path.join(cwd, "node_modules", "oc-sync")
  for (const f of ["server.mjs", "index.js", "bin/oc-sync.js", "package.json"]) assert.ok(fs.existsSync(path.join(dir, f)), `package lacks ${f}`)
  const native = path.join(cwd, "node_modules", platformPackageName())
  assert.ok(fs.existsSync(native) && fs.readdirSync(native).some((f) => f.endsWith(".node")), `${platformPackageName()} lacks the native module`)
  return { tarball: main, tarballs, dir }
}
