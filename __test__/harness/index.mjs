// Test harness: the real OpenCode binary, headless, against a fake model, one HOME per "machine".
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export * from "./fake-model.mjs";
export * from "./fake-github.mjs";
export * from "./fake-opensync.mjs";
export * from "./machine.mjs";
export * from "./package.mjs";
export * from "./serve.mjs";

/**
 * A fresh temp dir under os.tmpdir(). Returns { root, cleanup }; cleanup() removes it
 * unless KEEP_TMP=1 (then it prints where it is).
 */
export function makeTempRoot(prefix = "oc-sync-test-") {
  const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), prefix)));
  const cleanup = () => {
    if (process.env.KEEP_TMP === "1") {
      console.error(`[harness] KEEP_TMP=1: kept ${root}`);
      return;
    }
    fs.rmSync(root, { recursive: true, force: true, maxRetries: 3 });
  };
  return { root, cleanup };
}
