// The project's fake OpenSync dashboard (the `fake-opensync` binary of the workspace crate
// fake-opensync/) as a child process, for end-to-end tests of the OpenSync export.
//
// The binary prints `url=…` and `key=…` on stdout and serves until SIGINT/SIGTERM. Helper routes
// (no auth, not recorded): GET /_fake/state → {sessions, messages, requests, key};
// POST /_fake/fault {"path":"<glob>","times":n,"status":s} (or "drop":true); POST /_fake/refuse
// {"kind":"sessions"|"messages"|null,"reason":"..."}; POST /_fake/reset.
import { resolveWorkspaceBin, startServerBinary } from "./fake-server.mjs"

/** Path of the fake-opensync binary ($FAKE_OPENSYNC_BIN, else built with cargo when missing). */
export function resolveFakeOpensyncBin() {
  return resolveWorkspaceBin("fake-opensync", "FAKE_OPENSYNC_BIN")
}

/**
 * Start the fake OpenSync. Options: key (the one valid API key; default: a random osk_…),
 * port (default: any free one).
 * Returns { url, key, pid, stderr(), state(), fault({path, times, status|drop}), reset(), close() }.
 */
export async function startFakeOpensync({ key, port = 0 } = {}) {
  const bin = resolveFakeOpensyncBin()
  const args = ["--port", String(port)]
  if (key) args.push("--key", key)
  const server = await startServerBinary(bin, args, ["url", "key"])
  const info = server.info
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
    pid: server.pid,
    stderr: server.stderr,
    /** { sessions, messages, requests, key } as the fake holds them now. */
    state: () => admin("GET", "state"),
    /** Make the next `times` requests whose path matches the glob answer `status` (or be dropped). */
    fault: ({ path: glob, times = 1, status, drop } = {}) => admin("POST", "fault", { path: glob, times, ...(status !== undefined ? { status } : {}), ...(drop ? { drop: true } : {}) }),
    /** A server whose mutations of one kind ("sessions" | "messages") throw `reason`; kind null stops. */
    refuse: ({ kind, reason } = {}) => admin("POST", "refuse", { kind: kind ?? null, reason }),
    /** Forget sessions, messages, requests and faults. */
    reset: () => admin("POST", "reset", {}),
    close: server.close,
  }
}
