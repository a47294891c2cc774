// Packs the oc-sync package exactly as npm would publish it (plus the locally built native module)
// and unpacks it, so end-to-end tests load what users install.
import assert from "node:assert/strict"
import fs from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { spawnCollect } from "./machine.mjs"

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")

/** Returns { tarball, dir } under `destRoot`. */
export async function packPlugin(destRoot) {
  const pack = await spawnCollect("npm", ["pack", "--silent", "--pack-destination", destRoot], { cwd: repoRoot, env: { ...process.env } })
  assert.equal(pack.code, 0, pack.stderr)
  const tarball = path.join(destRoot, pack.stdout.trim().split("\n").pop())
  const out = path.join(destRoot, "unpacked")
  fs.mkdirSync(out, { recursive: true })
  const untar = await spawnCollect("tar", ["-xzf", tarball, "-C", out])
  assert.equal(untar.code, 0, untar.stderr)
  const dir = path.join(out, "package")
  for (const f of ["server.mjs", "index.js", "bin/oc-sync.js", "package.json"]) assert.ok(fs.existsSync(path.join(dir, f)), `package lacks ${f}`)
  assert.ok(fs.readdirSync(dir).some((f) => f.endsWith(".node")), "package lacks the native module")
  return { tarball, dir }
}
