#!/usr/bin/env node
// Makes the npm tarballs oc-sync is released as: the main package (JS shim, launcher, types; no native
// module) whose optionalDependencies name one package per platform, and one package per platform
// (npm/<platform>/ plus its built native module). The release workflow publishes exactly these
// tarballs, and __test__/package.e2e.test.mjs installs them.
//
//   node scripts/pack.mjs [--out DIR] [--from DIR] [--all]
//
// --from: where the built modules (oc-sync.<platform>.node) are; default the repo root, where
//         `npm run build` puts this machine's. --out: where the tarballs go; default .tmp/pack.
// --all:  fail unless every platform in package.json's napi.targets has its module (releases).
// Prints the tarball paths, main package first, one per line.
import { execFileSync } from "node:child_process"
import fs from "node:fs"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")

/** Rust target triple -> napi-rs platform name (the npm/ folder and the module's middle name). */
const PLATFORMS = {
  "x86_64-unknown-linux-gnu": "linux-x64-gnu",
  "aarch64-unknown-linux-gnu": "linux-arm64-gnu",
  "x86_64-apple-darwin": "darwin-x64",
  "aarch64-apple-darwin": "darwin-arm64",
  "x86_64-pc-windows-msvc": "win32-x64-msvc",
}

function npmPack(dir, out) {
  // npm's own file selection (the package's "files"), exactly as `npm publish` would take it.
  const stdout = execFileSync("npm", ["pack", "--silent", "--pack-destination", out], { cwd: dir, encoding: "utf8" })
  return path.join(out, stdout.trim().split("\n").pop())
}

function platformsOf(pkg) {
  return pkg.napi.targets.map((t) => {
    const p = PLATFORMS[t]
    if (!p) throw new Error(`pack: no platform name for target ${t}; add it to scripts/pack.mjs`)
    return p
  })
}

/** The main package with optionalDependencies on every platform package, as a tarball in `out`. */
function packMain(pkg, platforms, stage, out) {
  const unpacked = path.join(stage, "main")
  fs.mkdirSync(unpacked)
  execFileSync("tar", ["-xzf", npmPack(repo, stage), "-C", unpacked])
  const dir = path.join(unpacked, "package")
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"))
  const nodeFiles = fs.readdirSync(dir).filter((f) => f.endsWith(".node"))
  if (nodeFiles.length) throw new Error(`pack: the main package must not ship native modules (${nodeFiles}); check "files"`)
  manifest.optionalDependencies = Object.fromEntries(platforms.map((p) => [`${pkg.name}-${p}`, pkg.version]))
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify(manifest, null, 2) + "\n")
  return npmPack(dir, out)
}

/** The package of one platform with its module, or null when the module was not built. */
function packPlatform(pkg, platform, from, stage, out) {
  const file = `${pkg.napi.binaryName}.${platform}.node`
  const built = path.join(from, file)
  if (!fs.existsSync(built)) return null
  const dir = path.join(stage, platform)
  fs.cpSync(path.join(repo, "npm", platform), dir, { recursive: true })
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"))
  if (manifest.version !== pkg.version) throw new Error(`pack: npm/${platform} is version ${manifest.version}, package.json ${pkg.version}`)
  if (manifest.main !== file) throw new Error(`pack: npm/${platform}/package.json "main" is ${manifest.main}, expected ${file}`)
  fs.copyFileSync(built, path.join(dir, file))
  return npmPack(dir, out)
}

export function pack({ out = path.join(repo, ".tmp", "pack"), from = repo, all = false } = {}) {
  const pkg = JSON.parse(fs.readFileSync(path.join(repo, "package.json"), "utf8"))
  const platforms = platformsOf(pkg)
  fs.mkdirSync(out, { recursive: true })
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), "oc-sync-pack-"))
  try {
    const tarballs = [packMain(pkg, platforms, stage, out)]
    const missing = []
    for (const p of platforms) {
      const t = packPlatform(pkg, p, path.resolve(from), stage, out)
      if (t) tarballs.push(t)
      else missing.push(p)
    }
    if (tarballs.length === 1) throw new Error(`pack: no native module in ${from}; run: npm run build`)
    if (all && missing.length) throw new Error(`pack: modules missing for ${missing.join(", ")} in ${from}`)
    return { tarballs, missing }
  } finally {
    fs.rmSync(stage, { recursive: true, force: true })
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { out: { type: "string" }, from: { type: "string" }, all: { type: "boolean" } } })
  try {
    const { tarballs, missing } = pack({ out: values.out && path.resolve(values.out), from: values.from, all: values.all })
    for (const t of tarballs) console.log(t)
    if (missing.length) console.error(`pack: not packed (module not built here): ${missing.join(", ")}`)
  } catch (e) {
    console.error(e.message)
    process.exit(1)
  }
}
