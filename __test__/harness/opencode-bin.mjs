#!/usr/bin/env node
// Prints the resolved OpenCode binary and its version (scripts/setup.sh uses it to fail early).
import { resolveOpencodeBin, opencodeVersion } from "./machine.mjs"

const bin = resolveOpencodeBin()
console.log(`opencode ${opencodeVersion()} at ${bin}`)
