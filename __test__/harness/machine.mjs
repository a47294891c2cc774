// FINDINGS_PLACEHOLDER

import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

// ---------------------------------------------------------------------------
// Locating the OpenCode binary
// ---------------------------------------------------------------------------

let cachedBin;

/** Path of the real OpenCode binary. Throws (never skips) when it cannot be found. */
export function resolveOpencodeBin() {
  if (cachedBin) return cachedBin;
  const tried = [];
  const ok = (p) => {
    tried.push(p);
    return p && fs.existsSync(p) ? p : null;
  };
  if (process.env.OPENCODE_BIN) {
    if (!ok(process.env.OPENCODE_BIN)) throw new Error(`OPENCODE_BIN=${process.env.OPENCODE_BIN} does not exist`);
    return (cachedBin = { path: process.env.OPENCODE_BIN, version: null }).path;
  }
  const os = { win32: "windows" }[process.platform] ?? process.platform;
  const exe = process.platform === "win32" ? "opencode.exe" : "opencode";
  const base = `opencode-${os}-${process.arch}`;
  for (const pkg of [base, `${base}-baseline`, `${base}-musl`, `${base}-baseline-musl`]) {
    const pj = tryResolve(`${pkg}/package.json`);
    if (pj && ok(path.join(path.dirname(pj), "bin", exe))) {
      cachedBin = { path: path.join(path.dirname(pj), "bin", exe), version: readJson(pj).version };
      return cachedBin.path;
    }
    tried.push(`${pkg} (package not installed)`);
  }
  const pj = tryResolve("opencode-ai/package.json");
  if (pj && ok(path.join(path.dirname(pj), "bin", "opencode.exe"))) {
    cachedBin = { path: path.join(path.dirname(pj), "bin", "opencode.exe"), version: readJson(pj).version };
    return cachedBin.path;
  }
  throw new Error(
    `OpenCode binary not found (run \`npm install\`, or set OPENCODE_BIN). Tried:\n  ${tried.join("\n  ")}`,
  );
}

/** Version of the resolved binary (from its package.json, else `opencode --version`). */
export function opencodeVersion() {
  resolveOpencodeBin();
  if (!cachedBin.version) {
    cachedBin.version = execFileSync(cachedBin.path, ["--version"], { env: baseEnv(), encoding: "utf8" }).trim();
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

    /** All OpenCode log files of this machine, concatenated (sorted by name). */
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
