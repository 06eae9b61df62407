"""Ollama's official Python client (`pip install ollama`) against `kabench sim`, unchanged.

Usage: python3 tests/clients/ollama_python.py http://127.0.0.1:PORT
Every call below parses the simulator's replies with the client's own typed models;
an assertion or a parse error fails the check (exit 1).
"""
import sys

import ollama

host = sys.argv[1]
c = ollama.Client(host=host)

names = [m.model for m in c.list().models]
assert "qwen2.5:3b-instruct-q4_0" in names, names

r = c.generate(model="qwen2.5:3b-instruct-q4_0", prompt="hello", keep_alive="2s",
               options={"num_predict": 4})
assert r.done and r.done_reason == "length" and r.eval_count == 4, r
assert r.load_duration > 0 and r.total_duration >= r.load_duration, r

last = None
for chunk in c.chat(model="qwen2.5:3b-instruct-q4_0", messages=[{"role": "user", "content": "hi"}],
                    stream=True, options={"num_predict": 3}, keep_alive=-1):
    last = chunk
assert last is not None and last.done and last.eval_count == 3, last

ps = c.ps()
assert [m.model for m in ps.models] == ["qwen2.5:3b-instruct-q4_0"], ps
assert ps.models[0].size_vram == ps.models[0].size > 0, ps
assert ps.models[0].expires_at.year > 2200, ps  # forever: ~292 years ahead

s = c.show("qwen2.5:3b-instruct-q4_0")
assert "completion" in s.capabilities and s.details.quantization_level == "Q4_0", s

e = c.embed(model="nomic-embed-text", input=["a", "b"])
assert len(e.embeddings) == 2 and len(e.embeddings[0]) > 0, e

statuses = [p.status for p in c.pull("qwen2.5:3b-instruct-q4_0", stream=True)]
assert statuses[0] == "pulling manifest" and statuses[-1] == "success", statuses

try:
    c.generate(model="nosuch:1b", prompt="x")
    raise AssertionError("unknown model accepted")
except ollama.ResponseError as err:
    assert err.status_code == 404 and "not found" in err.error, err

r = c.generate(model="qwen3:8b", prompt="think", think=True, options={"num_predict": 8})
assert r.thinking, r

print("ollama-python client: every call parsed against kabench sim")
