// `opencode serve` as a long-running child of a harness machine, for tests that need OpenCode to
// hold its database open while something else writes to it.
import { spawn, execFileSync } from "node:child_process";
import net from "node:net";

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * Start `opencode serve --port <port> --hostname 127.0.0.1` on `machine` (cwd = `cwd`) and wait
 * until GET /session answers. Returns { url, port, pid, output(), stop() }. Throws (with the
 * server's output) when it does not come up within `timeoutMs`.
 */
export async function startServe(machine, { cwd, port, timeoutMs = 60000, args = [] } = {}) {
  port ??= await freePort();
  const child = spawn(machine.bin, ["serve", "--port", String(port), "--hostname", "127.0.0.1", ...args], {
    cwd: cwd ?? machine.home,
    env: machine.env(),
    detached: process.platform !== "win32",
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (d) => (out += d));
  child.stderr.setEncoding("utf8").on("data", (d) => (out += d));
  let exited = null;
  const exitP = new Promise((resolve) => child.on("exit", (code, signal) => resolve((exited = { code, signal }))));
  const kill = (sig) => {
    try {
      if (process.platform === "win32") execFileSync("taskkill", ["/T", "/F", "/PID", String(child.pid)], { stdio: "ignore" });
      else process.kill(-child.pid, sig);
    } catch {
      /* gone */
    }
  };
  const onExit = () => kill("SIGKILL");
  process.once("exit", onExit);

  const url = `http://127.0.0.1:${port}`;
  const t0 = Date.now();
  for (;;) {
    if (exited) throw new Error(`opencode serve exited early (${JSON.stringify(exited)}):\n${out}`);
    if (Date.now() - t0 > timeoutMs) {
      kill("SIGKILL");
      throw new Error(`opencode serve did not answer on ${url} within ${timeoutMs} ms:\n${out}`);
    }
    try {
      const r = await fetch(`${url}/session`, { signal: AbortSignal.timeout(2000) });
      if (r.ok) break;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 200));
  }

  return {
    url,
    port,
    pid: child.pid,
    startupMs: Date.now() - t0,
    output: () => out,
    /** SIGTERM, then SIGKILL after `graceMs`. Resolves the exit status. */
    async stop(graceMs = 5000) {
      process.removeListener("exit", onExit);
      if (exited) return exited;
      kill("SIGTERM");
      const timer = setTimeout(() => kill("SIGKILL"), graceMs);
      const r = await exitP;
      clearTimeout(timer);
      return r;
    },
  };
}
