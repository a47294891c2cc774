// Simulated "machines" for end-to-end tests: each has its own HOME/XDG dirs and runs the
// real OpenCode binary headless against the fake model (see fake-model.mjs).
//
// ---------------------------------------------------------------------------------------
// FINDINGS — OpenCode 1.18.33 on Linux, probed with a throwaway local plugin
// (package {"name":"probe","type":"module","exports":{"./server":"./server.mjs"}}, listed as
// ["file:///abs/dir", {"a":1}] in opencode.json "plugin").
//
// Log file: $XDG_DATA_HOME/opencode/log/opencode.log — ONE fixed file name, appended to by
//   every run (not one file per run). logfmt lines:
//     timestamp=2026-11-21T08:01:04.559Z level=INFO run=b294f72d message="probe loaded" options.a=1
//   `run=` is a random 8-hex id per process.
//
// (a) Loading a plugin writes NO log line (nothing at INFO nor DEBUG). Only failures do:
//       level=ERROR run=… message="failed to load plugin" path=file:///tmp/probe-bad error="boom from bad"
//     A file:// plugin whose path does not exist is skipped SILENTLY (no line at all).
//     client.app.log({body:{service:"probe",level:"info",message:"probe loaded",extra:{options}}})
//     resolves to {data:true} and writes:
//       timestamp=… level=INFO run=… message="probe loaded" options.a=1
//     i.e. `service` is NOT printed; `extra` is flattened into dotted key=value pairs;
//     level "warn" → level=WARN. So put a recognisable prefix into `message`.
//     !! The log FILE loses its tail: the writer is not flushed at exit, so lines logged late
//     in a run (session.idle, dispose, often even "project copy refresh…") are missing from
//     opencode.log in ~4 of 5 runs. `--print-logs` copies every line to stderr, completely
//     and reliably (5/5) — assert on r.stderr of `opencode run --print-logs …` instead.
// (b) dispose IS called at the end of `opencode run` (~20 ms after session.idle, after the
//     "disposing instance" log line, before exit), and client.app.log still works inside it.
//     The plugin is also loaded (server() + dispose) by `session list`, `export`, `stats`,
//     `models`; NOT by `db` or `debug paths`.
// (c) Events seen by the `event` hook during `opencode run "hi"` (counts per run):
//     session.created 1, session.updated 5, message.updated 5, message.part.updated 5,
//     message.part.delta 1, session.status 4 (busy…idle), session.diff 2, session.idle 1,
//     plugin.added 45 (OpenCode's internal plugins: core/config-reference, agent, anthropic,
//     openai-compatible, …; never the external plugin), catalog.updated 2,
//     reference.updated 1, integration.updated 1. With a write tool call additionally
//     file.edited {file} and file.watcher.updated {file, event:"add"}.
//     First event is session.created (~50 ms after server() resolved), last session.diff.
// (d) Options of a ["file:///…", {"a":1}] tuple arrive as the 2nd argument of server():
//     options = {"a":1}. input has client, project (project.id = root commit hash),
//     worktree, directory, experimental_workspace, serverUrl (http://localhost:4096/ — a
//     placeholder during `run`, nothing listens there; client calls are in-process), $.
//
// npm-install stall: before loading plugins OpenCode runs an npm install of
// @opencode-ai/plugin in EVERY config dir it reads — $XDG_CONFIG_HOME/opencode,
// <project>/.opencode and ~/.opencode — whichever exist — but only when at least one plugin
// is configured (without plugins nothing is awaited).
// Offline that costs ~70 s (retries even on ECONNREFUSED). seedOpencodeDir() prevents it
// (dropping package-lock.json or node_modules/ brings the stall back; package.json alone
// did not matter). Verified with npm_config_registry pointed at a dead local port.
//
// Other facts: OpenCode's project id = the repo's root commit hash (cached in .git/opencode).
// `opencode session list` only lists sessions of the cwd's project. `opencode run a b` joins
// args with spaces but an arg CONTAINING a space is sent wrapped in double quotes
// (run "please run" → user text "\"please run\""). stdout of `run` is the answer text only;
// the "> build · m" banner and tool echoes go to stderr. Network: only the fake model
// (checked with strace).
// ---------------------------------------------------------------------------------------

import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

// ---------------------------------------------------------------------------
// Locating the OpenCode binary
// ---------------------------------------------------------------------------

let cachedBin;

/** Path of the real OpenCode binary. Throws (never skips) when it cannot be found. */
export function resolveOpencodeBin() {
  if (cachedBin) return cachedBin.path;
  if (process.env.OPENCODE_BIN) {
    if (!fs.existsSync(process.env.OPENCODE_BIN)) throw new Error(`OPENCODE_BIN=${process.env.OPENCODE_BIN} does not exist`);
    return (cachedBin = { path: process.env.OPENCODE_BIN, version: null }).path;
  }
  const plat = { win32: "windows" }[process.platform] ?? process.platform;
  const base = `opencode-${plat}-${process.arch}`;
  const exe = process.platform === "win32" ? "opencode.exe" : "opencode";
  const candidates = [base, `${base}-baseline`, `${base}-musl`, `${base}-baseline-musl`].map((pkg) => [pkg, exe]);
  candidates.push(["opencode-ai", "opencode.exe"]); // the wrapper's postinstall copies the binary here
  const tried = [];
  for (const [pkg, file] of candidates) {
    const pj = tryResolve(`${pkg}/package.json`);
    const bin = pj && path.join(path.dirname(pj), "bin", file);
    if (bin && fs.existsSync(bin)) return (cachedBin = { path: bin, version: readJson(pj).version }).path;
    tried.push(bin ?? `${pkg} (package not installed)`);
  }
  throw new Error(`OpenCode binary not found (run \`npm install\`, or set OPENCODE_BIN). Tried:\n  ${tried.join("\n  ")}`);
}

/** Version of the resolved binary (from its package.json, else `opencode --version`). */
export function opencodeVersion() {
  resolveOpencodeBin();
  if (!cachedBin.version) {
    // Even --version creates OpenCode's dirs: point them at a scratch dir, never the real HOME.
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "oc-version-"));
    const dirs = Object.fromEntries(["HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "TMPDIR"].map((k) => [k, scratch]));
    try {
      cachedBin.version = execFileSync(cachedBin.path, ["--version"], { env: { ...baseEnv(), ...dirs }, encoding: "utf8" }).trim();
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
    }
  }
  return cachedBin.version;
}

function tryResolve(id) {
  try {
    return require.resolve(id);
  } catch {
    return null;
  }
}

function readJson(p) {
  return JSON.parse(fs.readFileSync(p, "utf8"));
}

// ---------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------

/** The few parent variables a child really needs; everything else is built per machine. */
function baseEnv() {
  const keep = ["PATH", "SystemRoot", "SYSTEMROOT", "COMSPEC", "PATHEXT", "WINDIR"]; // the rest are for Windows
  const env = {};
  for (const k of keep) if (process.env[k] !== undefined) env[k] = process.env[k];
  env.LANG = "C.UTF-8";
  return env;
}

/**
 * OpenCode runs a dependency install (npm, @opencode-ai/plugin) in every config dir it
 * loads — $XDG_CONFIG_HOME/opencode, every <project>/.opencode and ~/.opencode — before it
 * loads plugins. Offline that stalls ~70 s. A package.json + lock naming the exact version
 * and an (empty) node_modules/ make OpenCode consider the dir installed.
 */
export function seedOpencodeDir(dir) {
  const v = opencodeVersion();
  fs.mkdirSync(path.join(dir, "node_modules"), { recursive: true });
  const write = (f, obj) => {
    if (!fs.existsSync(path.join(dir, f))) fs.writeFileSync(path.join(dir, f), JSON.stringify(obj, null, 2) + "\n");
  };
  write("package.json", { dependencies: { "@opencode-ai/plugin": v } });
  write("package-lock.json", { lockfileVersion: 3, packages: { "": { dependencies: { "@opencode-ai/plugin": v } } } });
  return dir;
}

// ---------------------------------------------------------------------------
// Process spawning
// ---------------------------------------------------------------------------

const live = new Set(); // children still running, killed if the test process exits
process.once("exit", () => {
  for (const child of live) killTree(child);
});

function killTree(child) {
  try {
    if (process.platform === "win32") execFileSync("taskkill", ["/T", "/F", "/PID", String(child.pid)], { stdio: "ignore" });
    else process.kill(-child.pid, "SIGKILL"); // detached ⇒ the child leads its own process group
  } catch {
    /* already gone */
  }
}

/**
 * Spawn `cmd args` and collect its output.
 * Resolves { code, signal, stdout, stderr, ms, timedOut }; never rejects on exit status.
 * On timeout the whole process group is SIGKILLed, timedOut is true and a
 * "[harness] … timed out" line is appended to stderr.
 */
export function spawnCollect(cmd, args, { cwd, env, timeoutMs = 60000, input } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, {
      cwd,
      env,
      detached: process.platform !== "win32",
      stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    live.add(child);
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    let done = false;
    child.stdout.setEncoding("utf8").on("data", (d) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
    if (input !== undefined) child.stdin.end(input);

    const timer = setTimeout(() => {
      timedOut = true;
      killTree(child);
    }, timeoutMs);

    const finish = (code, signal) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      live.delete(child);
      const ms = Math.round(performance.now() - t0);
      if (timedOut) stderr += `\n[harness] ${path.basename(cmd)} ${args.join(" ")} timed out after ${timeoutMs} ms; process group killed\n`;
      resolve({ code, signal, stdout, stderr, ms, timedOut });
    };
    child.on("error", (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      live.delete(child);
      reject(new Error(`cannot spawn ${cmd}: ${err.message}`));
    });
    // 'close' waits for stdio to drain; if a grandchild keeps the pipes open, give up 2 s after 'exit'.
    child.on("close", finish);
    child.on("exit", (code, signal) => setTimeout(() => finish(code, signal), 2000).unref());
  });
}

// ---------------------------------------------------------------------------
// Git projects
// ---------------------------------------------------------------------------

// Fixed identity and dates: the same files ⇒ the same root commit hash on every machine,
// and OpenCode's project id is that root commit hash.
const GIT_FIXED = {
  GIT_AUTHOR_NAME: "Harness",
  GIT_AUTHOR_EMAIL: "harness@example.invalid",
  GIT_COMMITTER_NAME: "Harness",
  GIT_COMMITTER_EMAIL: "harness@example.invalid",
  GIT_AUTHOR_DATE: "2024-01-01T00:00:00Z",
  GIT_COMMITTER_DATE: "2024-01-01T00:00:00Z",
  GIT_CONFIG_NOSYSTEM: "1",
};

async function git(dir, env, ...args) {
  const r = await spawnCollect("git", ["-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", ...args], {
    cwd: dir,
    env: { ...env, ...GIT_FIXED },
    timeoutMs: 30000,
  });
  if (r.code !== 0) throw new Error(`git ${args.join(" ")} failed in ${dir} (${r.code}):\n${r.stderr}`);
  return r.stdout.trim();
}

// ---------------------------------------------------------------------------
// Machines
// ---------------------------------------------------------------------------

/**
 * A simulated machine: its own HOME and XDG dirs under root/name, a pre-seeded OpenCode
 * config dir and an opencode.json pointing at the fake model.
 */
export async function createMachine(name, { root, plugins = [], modelUrl, extraConfig = {}, env: machineEnv = {} } = {}) {
  if (!root) throw new Error("createMachine: root is required");
  if (!modelUrl) throw new Error("createMachine: modelUrl is required (startFakeModel().url)");
  const bin = resolveOpencodeBin();
  const home = path.join(root, name);
  const dirs = {
    home,
    config: path.join(home, ".config"),
    data: path.join(home, ".local", "share"),
    state: path.join(home, ".local", "state"),
    cache: path.join(home, ".cache"),
    tmp: path.join(home, "tmp"), // OpenCode puts its tmp dir under $TMPDIR/opencode — keep it per machine
    projects: path.join(home, "projects"),
  };
  for (const d of Object.values(dirs)) fs.mkdirSync(d, { recursive: true });
  const ocConfigDir = path.join(dirs.config, "opencode");
  seedOpencodeDir(ocConfigDir);

  const config = {
    $schema: "https://opencode.ai/config.json",
    ...(plugins.length ? { plugin: plugins } : {}),
    provider: {
      fake: {
        npm: "@ai-sdk/openai-compatible",
        options: { baseURL: modelUrl, apiKey: "x" },
        models: { m: { limit: { context: 100000, output: 4096 }, cost: { input: 1, output: 2 } } },
      },
    },
    model: "fake/m",
    ...extraConfig,
  };
  fs.writeFileSync(path.join(ocConfigDir, "opencode.json"), JSON.stringify(config, null, 2) + "\n");

  const envFor = (extra = {}) => ({
    ...baseEnv(),
    HOME: home,
    USERPROFILE: home,
    TMPDIR: dirs.tmp,
    XDG_CONFIG_HOME: dirs.config,
    XDG_DATA_HOME: dirs.data,
    XDG_STATE_HOME: dirs.state,
    XDG_CACHE_HOME: dirs.cache,
    OPENCODE_DISABLE_AUTOUPDATE: "1",
    OPENCODE_DISABLE_MODELS_FETCH: "1",
    ...machineEnv,
    ...extra,
  });

  const machine = {
    name,
    home,
    bin,
    dirs: { config: dirs.config, data: dirs.data, state: dirs.state, cache: dirs.cache, tmp: dirs.tmp },
    /** OpenCode's own dirs (what `opencode debug paths` prints). */
    opencodeDirs: {
      config: ocConfigDir,
      data: path.join(dirs.data, "opencode"),
      state: path.join(dirs.state, "opencode"),
      cache: path.join(dirs.cache, "opencode"),
      log: path.join(dirs.data, "opencode", "log"),
      db: path.join(dirs.data, "opencode", "opencode.db"),
    },
    config,
    env: envFor,

    /** Run the OpenCode binary. cwd defaults to the machine's HOME. */
    opencode(args, { cwd = home, timeoutMs = 60000, env } = {}) {
      return spawnCollect(bin, args, { cwd, timeoutMs, env: envFor(env) });
    },

    /** Run any command with this machine's environment. */
    run(cmd, args = [], { cwd = home, timeoutMs = 60000, env, input } = {}) {
      return spawnCollect(cmd, args, { cwd, timeoutMs, env: envFor(env), input });
    },

    /** `opencode db --format json <sql>` → parsed rows. Throws on failure. */
    async db(sql, opts = {}) {
      const r = await machine.opencode(["db", "--format", "json", sql], opts);
      if (r.code !== 0) throw new Error(`opencode db failed (${r.code}): ${r.stderr}`);
      return r.stdout.trim() ? JSON.parse(r.stdout) : [];
    },

    /**
     * All OpenCode log files of this machine, concatenated (sorted by name). Beware: OpenCode
     * does not flush the file at exit, so the last lines of a run are often missing — for
     * assertions on late lines run `opencode run --print-logs …` and read r.stderr.
     */
    readOpencodeLogs() {
      const dir = machine.opencodeDirs.log;
      if (!fs.existsSync(dir)) return "";
      return fs
        .readdirSync(dir)
        .sort()
        .map((f) => fs.readFileSync(path.join(dir, f), "utf8"))
        .join("");
    },

    /** Write a file relative to the machine's OpenCode config dir ($XDG_CONFIG_HOME/opencode). */
    writeConfigFile(relPath, text) {
      const p = path.join(ocConfigDir, relPath);
      fs.mkdirSync(path.dirname(p), { recursive: true });
      fs.writeFileSync(p, typeof text === "string" ? text : JSON.stringify(text, null, 2) + "\n");
      return p;
    },

    /** Pre-seed another OpenCode config dir (e.g. <project>/.opencode) against the npm stall. */
    seedOpencodeDir,

    /**
     * Create a git repo ~/projects/<projectName> with one commit. Identical files (default:
     * README.md "# <projectName>") give the identical root commit — thus the same OpenCode
     * project id — on every machine. files: { relPath: text }. dotOpencode: also create a
     * pre-seeded .opencode/ dir.
     */
    async projectDir(projectName, { files, dotOpencode = false } = {}) {
      const dir = path.join(dirs.projects, projectName);
      fs.mkdirSync(dir, { recursive: true });
      const e = envFor();
      await git(dir, e, "init", "-q");
      await git(dir, e, "config", "user.name", GIT_FIXED.GIT_AUTHOR_NAME);
      await git(dir, e, "config", "user.email", GIT_FIXED.GIT_AUTHOR_EMAIL);
      for (const [rel, text] of Object.entries(files ?? { "README.md": `# ${projectName}\n` })) {
        fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
        fs.writeFileSync(path.join(dir, rel), text);
      }
      await git(dir, e, "add", "-A");
      await git(dir, e, "commit", "-q", "-m", "initial");
      if (dotOpencode) seedOpencodeDir(path.join(dir, ".opencode")); // after the commit: not part of the hash
      return dir;
    },

    /** `git clone fromDir toDir` (toDir relative ⇒ under ~/projects). Same root commit. */
    async cloneProject(fromDir, toDir) {
      const dest = path.resolve(dirs.projects, toDir ?? path.basename(fromDir));
      fs.mkdirSync(path.dirname(dest), { recursive: true });
      await git(path.dirname(dest), envFor(), "clone", "-q", fromDir, dest);
      return dest;
    },

    /** Root commit hash of a repo (= OpenCode's project id for it). */
    rootCommit: (dir) => git(dir, envFor(), "rev-list", "--max-parents=0", "HEAD"),
  };
  return machine;
}

/** The last `lines` lines of a machine's oc-sync log files (for test failure messages). */
export function readOcSyncLog(m, lines = 60) {
  const dir = path.join(m.dirs.state, "oc-sync", "log");
  if (!fs.existsSync(dir)) return "(no oc-sync log dir)";
  return fs
    .readdirSync(dir)
    .sort()
    .map((f) => fs.readFileSync(path.join(dir, f), "utf8"))
    .join("")
    .split("\n")
    .slice(-lines)
    .join("\n");
}
