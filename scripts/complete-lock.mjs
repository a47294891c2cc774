#!/usr/bin/env node
// Completes package-lock.json with the platform-specific optional packages npm could not record.
//
// Why: `npm ci` insists that every optional dependency (e.g. opencode-darwin-arm64 of opencode-ai)
// has an entry in the lock, even for other platforms. When the registry in use serves only this
// platform's packages (as the package mirror of our build machines does), `npm install` leaves those
// entries out and `npm ci` then fails with "Missing: X from lock file". This script adds an entry
// for each missing one, with the os/cpu/libc its name declares, so `npm ci` skips it on platforms
// it is not for. Run it after `npm install` changes the lock; it changes nothing when npm recorded
// everything itself.
import fs from "node:fs"

const file = new URL("../package-lock.json", import.meta.url)
const lock = JSON.parse(fs.readFileSync(file, "utf8"))
const pkgs = lock.packages

const OS = { darwin: "darwin", linux: "linux", win32: "win32", windows: "win32", freebsd: "freebsd", android: "android", openharmony: "openharmony", sunos: "sunos", aix: "aix" }
const CPU = ["arm64", "x64", "ia32", "arm", "ppc64", "riscv64", "s390x", "loong64", "wasm32"]

function platformOf(name) {
  const parts = name.replace(/^@[^/]+\//, "").split("-")
  const os = parts.map((p) => OS[p]).find(Boolean)
  const cpu = parts.find((p) => CPU.includes(p)) ?? (parts.includes("eabi") || parts.includes("gnueabihf") ? "arm" : undefined)
  const libc = parts.includes("musl") ? "musl" : parts.includes("gnu") || parts.includes("gnueabihf") ? "glibc" : undefined
  if (parts.includes("wasi") || parts.includes("wasm32")) return { cpu: ["wasm32"] }
  if (!os && !cpu) return null
  return { ...(os && { os: [os] }), ...(cpu && { cpu: [cpu] }), ...(libc && os === "linux" && { libc: [libc] }) }
}

let added = 0
for (const [where, entry] of Object.entries(pkgs)) {
  for (const [name, version] of Object.entries(entry.optionalDependencies ?? {})) {
    // npm resolves a dependency in the nearest node_modules up the tree; hoisted to the root here.
    const nested = `${where ? where + "/" : ""}node_modules/${name}`
    if (pkgs[nested] || pkgs[`node_modules/${name}`]) continue
    const platform = platformOf(name)
    if (!platform) {
      console.error(`complete-lock: cannot tell the platform of ${name}; leaving it out`)
      continue
    }
    pkgs[`node_modules/${name}`] = { version, ...(entry.dev && { dev: true }), optional: true, ...platform }
    added++
  }
}
if (added) {
  lock.packages = Object.fromEntries(Object.entries(pkgs).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a.localeCompare(b))))
  fs.writeFileSync(file, JSON.stringify(lock, null, 2) + "\n")
}
console.log(`complete-lock: added ${added} platform-specific optional package entries`)
