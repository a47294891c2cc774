/** The OpenCode plugin entry of oc-sync: `"plugin": ["oc-sync"]` in opencode.json loads it. */
declare const plugin: {
  id: "oc-sync"
  /** Called by OpenCode with its plugin input and the options of `["oc-sync", { ... }]`. */
  server(input: unknown, options?: Record<string, unknown>): Promise<{
    event?: (arg: { event: { type: string } }) => Promise<void>
    dispose?: () => Promise<void>
  }>
}
export default plugin
