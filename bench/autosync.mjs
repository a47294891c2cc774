#!/usr/bin/env node
// Auto-sync figures with the real OpenCode: idle CPU of `opencode serve` with and without the
// oc-sync plugin, and the latency from a config edit to the change being on the remote.
// Usage: node bench/autosync.mjs [idleSeconds=30] [edits=3]   (after `bash scripts/setup.sh`)
import fs from "node:fs"
import path from "node:path"
import { spawn } from "node:child_process"
import { startFakeModel, createMachine, makeTempRoot, packPlugin } from "../__test__/harness/index.mjs"

const idleSeconds = Number(process.argv[2] ?? 30)
const edits = Number(process.argv[3] ?? 3)
const ticks = 100 // USER_HZ on Linux

function cpuTicks(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return Number(f[11]) + Number(f[12]) // utime + stime of the process (all threads)
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function serve(machine, port) {
  const child = spawn(machine.bin, ["serve", "--port", String(port), "--hostname", "127.0.0.1"], {
    cwd: machine.project,
    env: machine.env(),
    stdio: ["ignore", "ignore", "ignore"],
  })
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/config`, { signal: AbortSignal.timeout(1000) })
      if (r.ok) break
    } catch {}
    await sleep(100)
  }
  return child
}

async function idleCpu(machine, port) {
  const child = await serve(machine, port)
  await sleep(3000) // let startup work (and the startup sync) finish
  const t0 = cpuTicks(child.pid)
  await sleep(idleSeconds * 1000)
  const used = (cpuTicks(child.pid) - t0) / ticks
  return { child, cpuPercent: (100 * used) / idleSeconds }
}

const tmp = makeTempRoot("oc-sync-bench-")
const fake = await startFakeModel()
try {
  const pkg = await packPlugin(tmp.root)
  const remote = path.join(tmp.root, "remote")
  const withPlugin = await createMachine("with", { root: tmp.root, modelUrl: fake.url, plugins: [`file://${pkg.dir}`], env: { OC_SYNC_REMOTE: remote } })
  const without = await createMachine("without", { root: tmp.root, modelUrl: fake.url })
  withPlugin.project = await withPlugin.projectDir("demo")
  without.project = await without.projectDir("demo")

  const base = await idleCpu(without, 47311)
  base.child.kill("SIGTERM")
  const plug = await idleCpu(withPlugin, 47312)
  console.log(`idle CPU over ${idleSeconds} s: opencode serve ${base.cpuPercent.toFixed(2)}%, with oc-sync ${plug.cpuPercent.toFixed(2)}%`)

  const head = () => {
    try {
      return fs.readFileSync(path.join(remote, "HEAD"), "utf8")
    } catch {
      return ""
    }
  }
  const latencies = []
  for (let i = 0; i < edits; i++) {
    const before = head()
    const t0 = performance.now()
    fs.writeFileSync(path.join(withPlugin.opencodeDirs.config, "AGENTS.md"), `edit ${i} ${Date.now()}\n`)
    while (head() === before && performance.now() - t0 < 60000) await sleep(20)
    latencies.push(performance.now() - t0)
    await sleep(1000)
  }
  plug.child.kill("SIGTERM")
  const fmt = (ms) => `${(ms / 1000).toFixed(2)} s`
  console.log(`change-to-remote latency (fileWatcherDebounceMs 5000): ${latencies.map(fmt).join(", ")}`)
} finally {
  await fake.close()
  tmp.cleanup()
}
