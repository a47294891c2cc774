// A fake OpenAI-compatible model server for driving the real OpenCode binary.
//
// OpenCode (via @ai-sdk/openai-compatible) POSTs /v1/chat/completions, always with
// `stream: true` in 1.18 — both for the real turn and for the "title" agent that names
// the session. Non-stream requests are answered too, just in case.
//
// A *script* decides what the model says to each non-title request:
//
//   script(req) => reply | undefined | Promise<…>
//     req = { index, body, messages, lastMessage, tools /* names offered */,
//             toolResults /* messages with role "tool" */, afterToolResult /* last msg is a tool result */ }
//     reply = "text"                                      → plain text answer
//           | { text, usage?, delayMs? }
//           | { toolCalls: [{ name, args, id? }], text?, usage?, delayMs? } → the model calls tools
//           | { error: { status, message } }             → HTTP error
//     undefined → the default text ("Hello from the fake model.")
//
// Title requests (system prompt "You are a title generator…") never reach the script;
// they are answered with `title` (default "Fake session title").
//
// OpenCode 1.18.33 offers these tools to the build agent: bash{command,timeout?,workdir?},
// edit{filePath,oldString,newString,replaceAll?}, glob, grep, read{filePath,offset?,limit?},
// skill, task, todowrite, webfetch, write{content,filePath}. Paths must be absolute.
// After a tool call OpenCode executes the tool and sends a follow-up request whose last
// message has role "tool"; the `toolThenText` helper below answers that one with text.

import http from "node:http";

export const DEFAULT_TEXT = "Hello from the fake model.";
export const DEFAULT_USAGE = { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 };

/** True for OpenCode's session-title generation request. */
export function isTitleRequest(body) {
  const sys = body?.messages?.find((m) => m.role === "system");
  const text = typeof sys?.content === "string" ? sys.content : JSON.stringify(sys?.content ?? "");
  return text.includes("You are a title generator");
}

/** Script: call the given tool(s) first; once the tool result comes back, answer with `text`. */
export function toolThenText(toolCalls, text = "Done.") {
  const calls = Array.isArray(toolCalls) ? toolCalls : [toolCalls];
  return (req) => (req.afterToolResult ? { text } : { toolCalls: calls });
}

/** Script: reply with replies[i] to the i-th scripted request (last one repeats). */
export function sequence(replies) {
  let i = 0;
  return () => replies[Math.min(i++, replies.length - 1)];
}

export async function startFakeModel({ script, title = "Fake session title" } = {}) {
  let currentScript = script;
  const requests = []; // parsed bodies of every /chat/completions request (title ones included)
  const log = []; // every HTTP request: { method, url, body }
  let scriptedCount = 0;
  let callSeq = 0;

  const server = http.createServer(async (req, res) => {
    try {
      const raw = await readBody(req);
      let body = null;
      try { body = raw ? JSON.parse(raw) : null; } catch { body = raw; }
      log.push({ method: req.method, url: req.url, body });

      if (req.method === "GET" && /\/models\/?$/.test(req.url)) {
        return json(res, 200, { object: "list", data: [{ id: "m", object: "model", owned_by: "fake" }] });
      }
      if (req.method !== "POST" || !/\/chat\/completions\/?$/.test(req.url.split("?")[0])) {
        return json(res, 404, { error: { message: `fake model: no route ${req.method} ${req.url}` } });
      }
      requests.push(body);

      let reply;
      if (isTitleRequest(body)) {
        reply = { text: title };
      } else {
        const messages = body.messages ?? [];
        const lastMessage = messages[messages.length - 1];
        const ctx = {
          index: scriptedCount++,
          body,
          messages,
          lastMessage,
          tools: (body.tools ?? []).map((t) => t.function?.name),
          toolResults: messages.filter((m) => m.role === "tool"),
          afterToolResult: lastMessage?.role === "tool",
        };
        reply = currentScript ? await currentScript(ctx) : undefined;
      }
      reply = normalize(reply);
      if (reply.delayMs) await new Promise((r) => setTimeout(r, reply.delayMs));
      if (reply.error) return json(res, reply.error.status ?? 500, { error: { message: reply.error.message ?? "fake error" } });

      const toolCalls = (reply.toolCalls ?? []).map((c) => ({
        id: c.id ?? `call_${++callSeq}`,
        type: "function",
        function: { name: c.name, arguments: typeof c.args === "string" ? c.args : JSON.stringify(c.args ?? {}) },
      }));
      const finish = toolCalls.length ? "tool_calls" : "stop";
      const usage = reply.usage ?? DEFAULT_USAGE;
      const id = `chatcmpl-${callSeq}-${requests.length}`;
      const base = { id, created: Math.floor(Date.now() / 1000), model: body?.model ?? "m" };

      if (!body?.stream) {
        return json(res, 200, {
          ...base,
          object: "chat.completion",
          choices: [{
            index: 0,
            message: { role: "assistant", content: reply.text ?? null, ...(toolCalls.length ? { tool_calls: toolCalls } : {}) },
            finish_reason: finish,
          }],
          usage,
        });
      }

      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
      const chunk = (choices, extra = {}) =>
        res.write(`data: ${JSON.stringify({ ...base, object: "chat.completion.chunk", choices, ...extra })}\n\n`);
      chunk([{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }]);
      if (reply.text) chunk([{ index: 0, delta: { content: reply.text }, finish_reason: null }]);
      toolCalls.forEach((c, i) => {
        // Name first, arguments in a second delta — the way real OpenAI streams them.
        chunk([{ index: 0, delta: { tool_calls: [{ index: i, id: c.id, type: "function", function: { name: c.function.name, arguments: "" } }] }, finish_reason: null }]);
        chunk([{ index: 0, delta: { tool_calls: [{ index: i, function: { arguments: c.function.arguments } }] }, finish_reason: null }]);
      });
      chunk([{ index: 0, delta: {}, finish_reason: finish }]);
      chunk([], { usage }); // stream_options.include_usage: final chunk with no choices
      res.end("data: [DONE]\n\n");
    } catch (err) {
      if (!res.headersSent) json(res, 500, { error: { message: String(err?.stack ?? err) } });
      else res.end();
    }
  });

  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address();

  return {
    url: `http://127.0.0.1:${port}/v1`,
    port,
    requests,
    log,
    /** Requests that went to the script (i.e. not title generation). */
    chatRequests: () => requests.filter((b) => !isTitleRequest(b)),
    setScript(fn) { currentScript = fn; },
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      }),
  };
}

function normalize(reply) {
  if (reply === undefined || reply === null) return { text: DEFAULT_TEXT };
  if (typeof reply === "string") return { text: reply };
  return reply;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function json(res, status, obj) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(obj));
}
