// The project's fake GitHub (the `fake-github` binary of the workspace crate fake-github/) as a child
// process, for end-to-end tests of the GitHub remote with the real OpenCode binary.
//
// The binary prints `url=…`, `token=…`, `root=…` on stdout and serves until SIGINT/SIGTERM.
// Repositories are real bare git repos under <root>/<owner>/<name>.git.
import { spawnSync } from "node:child_process"
import fs from "node:fs"
import net from "node:net"
import path from "node:path"
import { resolveWorkspaceBin, startServerBinary } from "./fake-server.mjs"

/** Path of the fake-github binary ($FAKE_GITHUB_BIN, else built with cargo when missing). */
export function resolveFakeGithubBin() {
  return resolveWorkspaceBin("fake-github", "FAKE_GITHUB_BIN")
}

/**
 * Start the fake GitHub. Options: root (dir for its bare repos, required), token, login, repos
 * (["owner/name" or "owner/name:public"]), port (default: any free one).
 * Returns { url, token, root, login, pid, gitDir(owner, name), show(owner, name, "rev:path"),
 * item(owner, name, "rev:path"), close() }.
 */
export async function startFakeGithub({ root, token, login, repos = [], port = 0 } = {}) {
  if (!root) throw new Error("startFakeGithub: root is required")
  fs.mkdirSync(root, { recursive: true })
  const bin = resolveFakeGithubBin()
  const args = ["--port", String(port), "--root", root]
  if (token) args.push("--token", token)
  if (login) args.push("--login", login)
  for (const r of repos) args.push("--repo", r)
  const server = await startServerBinary(bin, args, ["url", "token", "root"])
  const info = server.info
  const gitDir = (owner, name) => path.join(info.root, owner, `${name}.git`)
  return {
    url: info.url,
    token: info.token,
    root: info.root,
    login: login ?? "octo-user",
    pid: server.pid,
    stderr: server.stderr,
    gitDir,
    /** `git --git-dir <repo> show <spec>` → text, or null when it fails (no repo, no such path). */
    show(owner, name, spec) {
      const r = spawnSync("git", ["--git-dir", gitDir(owner, name), "show", spec], { encoding: "utf8" })
      return r.status === 0 ? r.stdout : null
    },
    /** An item file's content (repository format 2: after its `oc-sync-item 2 {...}` header line),
     *  or null when the file is missing or has no header. */
    item(owner, name, spec) {
      const text = this.show(owner, name, spec)
      if (text === null || !text.startsWith("oc-sync-item 2 ")) return null
      return text.slice(text.indexOf("\n") + 1)
    },
    close: server.close,
  }
}

/** A loopback port that nothing listens on (a server is bound to it and closed again). */
export function closedPort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.on("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}
