// Ollama's official JavaScript client (`npm install ollama`) against `kabench sim`, unchanged.
// Usage: node tests/clients/ollama_js.mjs http://127.0.0.1:PORT   (exit 1 on any mismatch)
import assert from "node:assert/strict";
import { Ollama } from "ollama";

const ollama = new Ollama({ host: process.argv[2] });
const model = "qwen2.5:3b-instruct-q4_0";

const tags = await ollama.list();
assert.ok(tags.models.some((m) => m.name === model));

const r = await ollama.generate({ model, prompt: "hello", keep_alive: "2s", options: { num_predict: 4 } });
assert.equal(r.done, true);
assert.equal(r.eval_count, 4);
assert.ok(r.load_duration > 0);

let last;
for await (const part of await ollama.chat({
  model, messages: [{ role: "user", content: "hi" }], stream: true, keep_alive: -1, options: { num_predict: 3 },
})) last = part;
assert.equal(last.done, true);
assert.equal(last.eval_count, 3);

const ps = await ollama.ps();
assert.equal(ps.models[0].name, model);
assert.equal(ps.models[0].size_vram, ps.models[0].size);
assert.ok(new Date(ps.models[0].expires_at).getUTCFullYear() > 2200);

const show = await ollama.show({ model });
assert.ok(show.capabilities.includes("completion"));

const e = await ollama.embed({ model: "nomic-embed-text", input: ["a", "b"] });
assert.equal(e.embeddings.length, 2);

const v = await ollama.version();
assert.equal(v.version, "0.32.15");

await assert.rejects(ollama.generate({ model: "nosuch:1b", prompt: "x" }), (err) => err.status_code === 404);

console.log("ollama-js client: every call parsed against kabench sim");
