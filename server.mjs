// The OpenCode plugin entry of oc-sync (package.json exports["./server"]).
//
// Deliberately tiny: it starts the Rust engine in the background and returns its hooks at once.
// It never writes to stdout/stderr (that would corrupt OpenCode's TUI): everything goes through
// client.app.log (service "oc-sync") and oc-sync's own log file.
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"

const require = createRequire(import.meta.url)
// OpenCode's database is synced by the oc-sync CLI in a separate process (OpenCode's own SQLite and
// a second one in the same process would not see each other's locks): this process's runtime
// (OpenCode's Bun, run as Bun through BUN_BE_BUN=1, or node) runs the package's launcher.
const HELPER = [process.execPath, fileURLToPath(new URL("./bin/oc-sync.js", import.meta.url))]
const SERVICE = "oc-sync"
const LOG_FLUSH_MS = 2000
const STOP_TIMEOUT_MS = 5000

async function server(input, options) {
  const client = input?.client
  const pending = new Set()
  const log = (level, message) => {
    try {
      // OpenCode's log file drops the service name, so every message starts with "oc-sync".
      const text = message.startsWith("oc-sync") ? message : `oc-sync: ${message}`
      const p = client?.app?.log?.({ body: { service: SERVICE, level, message: text } })
      if (p && typeof p.then === "function") {
        const tracked = p.catch(() => {}).finally(() => pending.delete(tracked))
        pending.add(tracked)
      }
    } catch {
      // Logging must never break OpenCode.
    }
  }

  let native
  try {
    native = require("./index.js")
  } catch (err) {
    log("error", `oc-sync cannot load its native module on ${process.platform}-${process.arch}: ${err?.message ?? err}. Reinstall oc-sync for this platform.`)
    return {}
  }

  let engine
  try {
    engine = native.Engine.start(options ?? null, input?.directory ?? null, HELPER)
  } catch (err) {
    log("error", `oc-sync could not start: ${err?.message ?? err}`)
    return {}
  }
  log("info", `oc-sync ${native.version()} plugin loaded`)

  // A conflict that needs the person (strategy "ask") shows a toast once.
  let toasted = ""
  const notifyConflicts = (status) => {
    try {
      const waiting = status?.conflictsWaiting ?? []
      const signature = waiting.join("\n")
      if (waiting.length === 0 || signature === toasted) return
      toasted = signature
      const message = `${waiting.length} sync conflict${waiting.length > 1 ? "s" : ""} need${waiting.length > 1 ? "" : "s"} you (${waiting.slice(0, 2).join(", ")}): run \`oc-sync conflicts\``
      const p = client?.tui?.showToast?.({ body: { title: "oc-sync", message, variant: "warning" } })
      p?.catch?.(() => {})
    } catch {}
  }
  // A refused OpenSync export (items the server did not store, a refused key) shows a toast once
  // per distinct problem, with what to do.
  let toastedExport = ""
  const notifyExport = (status) => {
    try {
      const p = status?.opensyncProblem
      const signature = p ? `${p.kind}\n${p.message}` : ""
      if (signature === toastedExport) return
      toastedExport = signature
      if (!p) return
      const message = `${p.message}. ${p.hint.charAt(0).toUpperCase()}${p.hint.slice(1)}.`
      const t = client?.tui?.showToast?.({ body: { title: "oc-sync: OpenSync export", message, variant: "error" } })
      t?.catch?.(() => {})
    } catch {}
  }
  // What stops syncing (a rejected token, an invalid config, the mass-deletion stop, a copy of
  // the plugin loaded twice...) shows a toast once per distinct problem, with what to do (the
  // engine logs it once); "syncing again" once it went away.
  let toastedProblem = ""
  const notifyProblem = (status) => {
    try {
      const p = status?.problem
      const signature = p ? `${p.kind}\n${p.message}` : ""
      if (signature === toastedProblem) return
      const had = toastedProblem !== ""
      toastedProblem = signature
      const body = p
        ? { title: "oc-sync: not syncing", message: `${p.message.replace(/\.$/, "")}. To fix: ${p.action}.`, variant: p.kind === "alreadyRunning" ? "warning" : "error", duration: 15000 }
        : had && { title: "oc-sync", message: "oc-sync: syncing again", variant: "success" }
      if (body) client?.tui?.showToast?.({ body })?.catch?.(() => {})
    } catch {}
  }
  const flush = () => {
    try {
      for (const r of engine.takeLogs()) log(r.level, r.message)
    } catch {}
    let status
    try {
      status = engine.status()
    } catch {
      return
    }
    notifyConflicts(status)
    notifyExport(status)
    notifyProblem(status)
  }
  const timer = setInterval(flush, LOG_FLUSH_MS)
  timer.unref?.()
  const firstFlush = setTimeout(flush, 300)
  firstFlush.unref?.()
  let disposed = false
  let reshown = false

  // Slash commands: added to OpenCode's config, answered by the engine. OpenCode 1.18 always sends
  // a command's prompt to the model after `command.execute.before`; the only way to answer without
  // the model is to show the answer as a message the model ignores (noReply, ignored) and then
  // throw, which ends the command quietly.
  const ours = new Set()
  const show = (sessionID, text) =>
    client.session.prompt({ path: { id: sessionID }, body: { noReply: true, parts: [{ type: "text", text, ignored: true }] } })
  const answered = () => Object.assign(new Error(""), { name: "", stack: "" })

  return {
    config: async (cfg) => {
      try {
        cfg.command ??= {}
        for (const c of native.slashCommands()) {
          if (cfg.command[c.name]) continue // the person's own command of that name wins
          cfg.command[c.name] = { template: c.template, description: c.description }
          ours.add(c.name)
        }
      } catch (err) {
        log("warn", `oc-sync could not add its commands: ${err?.message ?? err}`)
      }
    },
    "command.execute.before": async (input) => {
      if (!ours.has(input?.command)) return
      let text
      try {
        text = await engine.answerCommand(input.command, input.arguments ?? "")
      } catch (err) {
        text = `oc-sync: ${err?.message ?? err}`
      }
      if (text == null) return
      try {
        await show(input.sessionID, text)
      } catch (err) {
        log("warn", `oc-sync could not show its answer to /${input.command}: ${err?.message ?? err}`)
        return // let the command's prompt go to the model instead
      }
      throw answered()
    },
    // The agent's tools. Arguments are plain JSON Schema (OpenCode 1.18 accepts that as well as
    // zod, and oc-sync does not ship zod); every listed argument is required.
    tool: {
      oc_sync: {
        description:
          "oc-sync keeps OpenCode's config, state and sessions in step across the person's machines. action \"status\": what oc-sync is doing (remote, last sync, pending changes, conflicts); \"sync\": sync now and report what changed; \"conflicts\": list the conflicts waiting for the person and how to settle them.",
        args: { action: { type: "string", enum: ["status", "sync", "conflicts"], description: "status, sync or conflicts" } },
        execute: async (args) => engine.answerTool(String(args?.action ?? "")),
      },
      oc_sync_resolve: {
        description:
          "Settle one oc-sync conflict, only when the person asked for it and chose the side: keep \"local\" (this machine's version) or \"remote\" (the other machine's). The version not kept stays in oc-sync's conflict copies.",
        args: {
          key: { type: "string", description: "the item key from the conflicts list, e.g. config/opencode.json" },
          keep: { type: "string", enum: ["local", "remote"], description: "which version to keep" },
        },
        execute: async (args) => engine.resolveConflict(String(args?.key ?? ""), String(args?.keep ?? "")),
      },
    },
    event: async ({ event }) => {
      if (disposed || !event?.type) return
      // A toast sent while OpenCode's TUI was still starting is lost: show the waiting conflicts
      // again once the person works in a session...
      if (!reshown && event.type.startsWith("session.")) {
        reshown = true
        toasted = ""
        // ...and what stops syncing (a rejected token, an invalid config), once more.
        toastedProblem = ""
        try {
          const status = engine.status()
          notifyConflicts(status)
          notifyProblem(status)
        } catch {}
      }
      try {
        engine.notify(event.type)
      } catch {}
    },
    dispose: async () => {
      if (disposed) return
      disposed = true
      clearInterval(timer)
      // The log queue is the process's: a flush after dispose would take a later instance's lines.
      clearTimeout(firstFlush)
      try {
        await engine.stop(STOP_TIMEOUT_MS)
      } catch (err) {
        log("error", `oc-sync did not stop cleanly: ${err?.message ?? err}`)
      }
      flush()
      log("info", "oc-sync stopped")
      // Let the last log calls land, but never hold OpenCode's exit for long.
      await Promise.race([Promise.allSettled([...pending]), new Promise((r) => setTimeout(r, 1000).unref?.())])
    },
  }
}

export default { id: "oc-sync", server }
