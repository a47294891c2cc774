/** The OpenCode plugin entry of oc-sync: `"plugin": ["oc-sync"]` in opencode.json loads it. */
declare const plugin: {
  id: "oc-sync"
  /** Called by OpenCode with its plugin input and the options of `["oc-sync", { ... }]`. */
  server(input: unknown, options?: Record<string, unknown>): Promise<{
    event?: (arg: { event: { type: string } }) => Promise<void>
    dispose?: () => Promise<void>
    /** Adds /sync, /sync-status and /sync-conflicts to OpenCode's commands. */
    config?: (config: { command?: Record<string, { template: string; description?: string }> }) => Promise<void>
    /** Answers oc-sync's commands in the session, without the model. */
    "command.execute.before"?: (input: { command: string; sessionID: string; arguments: string }, output: { parts: unknown[] }) => Promise<void>
    /** The agent's tools: oc_sync (status, sync, conflicts) and oc_sync_resolve. */
    tool?: Record<string, { description: string; args: Record<string, unknown>; execute(args: any, context: unknown): Promise<string> }>
  }>
}
export default plugin
