#!/usr/bin/env node
// The `oc-sync` command: hands argv to the Rust CLI inside the native module.
"use strict"
const path = require("node:path")

if (!process.env.OC_SYNC_PACKAGE_DIR) process.env.OC_SYNC_PACKAGE_DIR = path.resolve(__dirname, "..")

let native
try {
  native = require("../index.js")
} catch (err) {
  process.stderr.write(
    `oc-sync: cannot load the native module for ${process.platform}-${process.arch}: ${err && err.message}\n` +
      "Reinstall with `npm install oc-sync` (with optional dependencies enabled), or build it from source (README).\n",
  )
  process.exit(1)
}

try {
  process.exitCode = native.runCli(process.argv.slice(2))
} catch (err) {
  process.stderr.write(`oc-sync: ${err && err.message}\n`)
  process.exitCode = 1
}
