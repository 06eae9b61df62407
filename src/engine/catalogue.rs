//! The simulated model catalogue: realistic models and quantizations with file size,
//! layer geometry (for the KV cache), load and prefill/decode speeds, each calibrated
//! from cited public figures (`OLLAMA.md`, "Footprint and load-time model").
//! Built-in defaults, extendable from a scenario's `[[sim.models]]`. Knows nothing of
//! HTTP or the scheduler's state.
//! Over 500 lines: mostly the data table of models, each figure with its source.

use crate::ollama::name;
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use crate::scenario::engine_settings::{Capability, ModelSpec};

/// The set of installed models of the simulated host.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Catalogue {
    /// Models in a stable order.
    pub models: Vec<ModelSpec>,
}

/// Bits per weight of each quantization, read off Llama-3.1-8B's GGUF sizes in
/// ggml-org/llama.cpp `tools/quantize/README.md` (F16 14.96 GiB, Q8_0 7.95 GiB, Q4_K_M
/// 4.58 GiB for 8.03 B weights); Q4_0 is 4.5 bits (32 4-bit weights + one f16 scale).
const QUANTS: [(&str, &str, f64); 4] = [
    ("q4_0", "Q4_0", 4.5),
    ("q4_K_M", "Q4_K_M", 4.89),
    ("q8_0", "Q8_0", 8.5),
    ("fp16", "F16", 16.0),
];

/// Llama-3.1-8B decode tokens/s per quantization (llama.cpp `tools/quantize/README.md`:
/// 29.2 / 50.9 / 71.9 for F16 / Q8_0 / Q4_K_M); Q4_0 scaled from Q4_K_M by weight bytes.
fn anchor_decode_tps(quant: &str) -> f64 {
    match quant {
        "F16" => 29.2,
        "Q8_0" => 50.9,
        "Q4_0" => 71.9 * 4.89 / 4.5,
        _ => 71.9,
    }
}

/// Llama-3.1-8B prompt evaluation tokens/s (llama.cpp quantize README: 820–920 t/s).
fn anchor_prefill_tps(quant: &str) -> f64 {
    match quant {
        "F16" => 820.0,
        "Q8_0" => 880.0,
        "Q4_0" => 920.0,
        _ => 900.0,
    }
}

/// Weights of the anchor model, Llama-3.1-8B.
const ANCHOR_PARAMS: f64 = 8.03e9;

const QUANT_SOURCE: &str = "file size = parameters x bits/weight from Llama-3.1-8B GGUF sizes \
(F16 14.96 GiB, Q8_0 7.95 GiB, Q4_K_M 4.58 GiB; Q4_0 4.5 bits/weight) and decode 29.2/50.9/71.9 t/s, \
prompt eval 820-920 t/s: ggml-org/llama.cpp tools/quantize/README.md; speeds scaled inversely \
with weight bytes; KV geometry from the model's GGUF metadata (block_count, head_count_kv, head dim)";

/// Geometry of one text model family and size.
struct Family {
    /// Tag prefix before the quantization, e.g. `qwen2.5:7b-instruct`.
    prefix: &'static str,
    /// Aliases of the default (Q4_K_M) build.
    default_aliases: &'static [&'static str],
    arch: &'static str,
    params: f64,
    parameter_size: &'static str,
    block_count: u32,
    kv_heads: u32,
    head_dim: u32,
    context_length: u32,
    capabilities: &'static [Capability],
    geometry_source: &'static str,
}

const TEXT: [Capability; 2] = [Capability::Completion, Capability::Tools];

/// Text families in all four quantizations. Geometry: the models' published configs
/// (`num_hidden_layers`, `num_key_value_heads`, `hidden_size / num_attention_heads`,
/// `max_position_embeddings`) as their GGUF metadata repeats them.
const FAMILIES: [Family; 6] = [
    Family {
        prefix: "qwen2.5:3b-instruct",
        default_aliases: &["qwen2.5:3b", "qwen2.5:3b-instruct"],
        arch: "qwen2",
        params: 3.09e9,
        parameter_size: "3.1B",
        block_count: 36,
        kv_heads: 2,
        head_dim: 128,
        context_length: 32768,
        capabilities: &TEXT,
        geometry_source: "Qwen/Qwen2.5-3B-Instruct config.json (36 layers, 2 KV heads, head dim 128, 32k)",
    },
    Family {
        prefix: "qwen2.5:7b-instruct",
        default_aliases: &["qwen2.5:7b", "qwen2.5:7b-instruct", "qwen2.5:latest"],
        arch: "qwen2",
        params: 7.62e9,
        parameter_size: "7.6B",
        block_count: 28,
        kv_heads: 4,
        head_dim: 128,
        context_length: 32768,
        capabilities: &TEXT,
        geometry_source: "Qwen/Qwen2.5-7B-Instruct config.json (28 layers, 4 KV heads, head dim 128, 32k)",
    },
    Family {
        prefix: "qwen2.5:14b-instruct",
        default_aliases: &["qwen2.5:14b", "qwen2.5:14b-instruct"],
        arch: "qwen2",
        params: 14.77e9,
        parameter_size: "14.8B",
        block_count: 48,
        kv_heads: 8,
        head_dim: 128,
        context_length: 32768,
        capabilities: &TEXT,
        geometry_source: "Qwen/Qwen2.5-14B-Instruct config.json (48 layers, 8 KV heads, head dim 128, 32k)",
    },
    Family {
        prefix: "llama3.1:8b-instruct",
        default_aliases: &["llama3.1:8b", "llama3.1:8b-instruct", "llama3.1:latest"],
        arch: "llama",
        params: ANCHOR_PARAMS,
        parameter_size: "8.0B",
        block_count: 32,
        kv_heads: 8,
        head_dim: 128,
        context_length: 131072,
        capabilities: &TEXT,
        geometry_source: "meta-llama/Llama-3.1-8B-Instruct config.json (32 layers, 8 KV heads, head dim 128, 128k); OLLAMA.md: 128 KiB KV per token",
    },
    Family {
        prefix: "llama3.2:3b-instruct",
        default_aliases: &["llama3.2:3b", "llama3.2:3b-instruct", "llama3.2:latest"],
        arch: "llama",
        params: 3.21e9,
        parameter_size: "3.2B",
        block_count: 28,
        kv_heads: 8,
        head_dim: 128,
        context_length: 131072,
        capabilities: &TEXT,
        geometry_source: "meta-llama/Llama-3.2-3B-Instruct config.json (28 layers, 8 KV heads, head dim 128, 128k)",
    },
    Family {
        prefix: "mistral:7b-instruct",
        default_aliases: &["mistral:7b", "mistral:7b-instruct", "mistral:latest"],
        arch: "llama",
        params: 7.25e9,
        parameter_size: "7.2B",
        block_count: 32,
        kv_heads: 8,
        head_dim: 128,
        context_length: 32768,
        capabilities: &TEXT,
        geometry_source: "mistralai/Mistral-7B-Instruct-v0.3 config.json (32 layers, 8 KV heads, head dim 128, 32k); ollama/ollama docs/api.md: mistral 7B Q4_0 resident 5,137,025,024 bytes",
    },
];

fn family_models(f: &Family) -> impl Iterator<Item = ModelSpec> + '_ {
    QUANTS.iter().map(move |&(tag, quant, bits)| {
        let scale = ANCHOR_PARAMS / f.params;
        ModelSpec {
            name: format!("{}-{tag}", f.prefix),
            aliases: if quant == "Q4_K_M" {
                f.default_aliases.iter().map(|a| a.to_string()).collect()
            } else {
                Vec::new()
            },
            family: f.arch.to_string(),
            parameter_size: f.parameter_size.to_string(),
            quantization: quant.to_string(),
            file_bytes: (f.params * bits / 8.0).round() as u64,
            block_count: f.block_count,
            kv_heads: f.kv_heads,
            head_dim: f.head_dim,
            context_length: f.context_length,
            prefill_tps: anchor_prefill_tps(quant) * scale,
            decode_tps: anchor_decode_tps(quant) * scale,
            capabilities: f.capabilities.to_vec(),
            embedding_length: None,
            source: format!("{QUANT_SOURCE}; {}", f.geometry_source),
            load_s: None,
            overhead_bytes: None,
            overhead_per_token: None,
        }
    })
}

/// Models outside the four-quantization families, each with its own figures.
fn special_models() -> Vec<ModelSpec> {
    let q4 = 4.89;
    vec![
        // nomic-embed-text v1.5: 137 M weights in F16, 274 MB in Ollama's library;
        // nomic-bert, 12 layers, 12 heads of 64, 2048 context, 768-long vectors.
        ModelSpec {
            name: "nomic-embed-text:v1.5".into(),
            aliases: vec!["nomic-embed-text:latest".into()],
            family: "nomic-bert".into(),
            parameter_size: "137M".into(),
            quantization: "F16".into(),
            file_bytes: 274_290_656,
            block_count: 12,
            kv_heads: 12,
            head_dim: 64,
            context_length: 2048,
            prefill_tps: 20_000.0,
            decode_tps: 1.0,
            capabilities: vec![Capability::Embedding],
            embedding_length: Some(768),
            source: "nomic-ai/nomic-embed-text-v1.5 config.json (12 layers, 12 heads, 768 dims, 2048 ctx); \
                     137M F16 weights = 274 MB as Ollama's library lists; prompt speed scaled from \
                     Llama-3.1-8B F16's 820 t/s by parameters (llama.cpp tools/quantize/README.md)"
                .into(),
            load_s: None,
            overhead_bytes: None,
            overhead_per_token: None,
        },
        // LLaVA 1.6 on Mistral-7B, Q4_0 text weights plus a 0.6 GB F16 CLIP projector:
        // 4.7 GB in Ollama's library.
        ModelSpec {
            name: "llava:7b-v1.6-mistral-q4_0".into(),
            aliases: vec!["llava:7b".into(), "llava:latest".into()],
            family: "llama".into(),
            parameter_size: "7B".into(),
            quantization: "Q4_0".into(),
            file_bytes: (7.25e9 * 4.5 / 8.0 + 624_434_336.0) as u64,
            block_count: 32,
            kv_heads: 8,
            head_dim: 128,
            context_length: 32768,
            prefill_tps: anchor_prefill_tps("Q4_0") * ANCHOR_PARAMS / 7.25e9,
            decode_tps: anchor_decode_tps("Q4_0") * ANCHOR_PARAMS / 7.25e9,
            capabilities: vec![Capability::Completion, Capability::Vision],
            embedding_length: None,
            source: format!(
                "{QUANT_SOURCE}; liuhaotian/llava-v1.6-mistral-7b (Mistral-7B geometry) + 0.6 GB CLIP projector, 4.7 GB in Ollama's library"
            ),
            load_s: None,
            overhead_bytes: None,
            overhead_per_token: None,
        },
        // Qwen3-8B: 8.19 B weights, 36 layers, 8 KV heads of 128, 40960 context;
        // 5.2 GB at Q4_K_M in Ollama's library.
        ModelSpec {
            name: "qwen3:8b-q4_K_M".into(),
            aliases: vec!["qwen3:8b".into(), "qwen3:latest".into()],
            family: "qwen3".into(),
            parameter_size: "8.2B".into(),
            quantization: "Q4_K_M".into(),
            file_bytes: (8.19e9 * q4 / 8.0) as u64,
            block_count: 36,
            kv_heads: 8,
            head_dim: 128,
            context_length: 40960,
            prefill_tps: anchor_prefill_tps("Q4_K_M") * ANCHOR_PARAMS / 8.19e9,
            decode_tps: anchor_decode_tps("Q4_K_M") * ANCHOR_PARAMS / 8.19e9,
            capabilities: vec![Capability::Completion, Capability::Thinking, Capability::Tools],
            embedding_length: None,
            source: format!(
                "{QUANT_SOURCE}; Qwen/Qwen3-8B config.json (36 layers, 8 KV heads, head dim 128, 40960 ctx)"
            ),
            load_s: None,
            overhead_bytes: None,
            overhead_per_token: None,
        },
    ]
}

/// Where the tiny test models' figures come from: Ollama v0.32.15's CPU build
/// (`../shared/ollama`, 2 vCPU shared with other work, no GPU), measured with
/// `num_ctx` 4096 and 2048, 64 generated tokens, fresh random-word prompts of ≈ 380
/// tokens, 5 load cycles and 10 warm requests per model (medians).
const TINY_SOURCE: &str = "measured on Ollama v0.32.15's CPU build (no GPU, 2 vCPU): \
geometry from ../shared/ollama/make_tiny_models.py (llama, random F16 weights, 1800-token vocab, \
4096 training context); file = the GGUF blob in the model store; resident = /api/ps size (size_vram 0) \
at num_ctx 4096 and 2048, which is file + KV (E1's formula) + a fixed compute buffer + 1024 B per \
token of context; load = median load_duration of 5 loads from the page cache (Ollama polls the \
runner's health every 250 ms, so loads come in steps of ≈0.25 s); prompt eval and decode = \
median prompt_eval_count/prompt_eval_duration and eval_count/eval_duration of 10 warm requests";

/// One tiny test model as the CPU build measured it.
struct Tiny {
    name: &'static str,
    params: &'static str,
    quant: &'static str,
    file_bytes: u64,
    block_count: u32,
    kv_heads: u32,
    head_dim: u32,
    overhead_bytes: u64,
    load_s: f64,
    prefill_tps: f64,
    decode_tps: f64,
    measured: &'static str,
}

/// The random-weight llama models the project's real-Ollama tests use
/// (`make_tiny_models.py`: tiny-50m = 512 dims, 8 layers, 8 heads (8 KV) of 64;
/// tiny-150m = 768 dims, 12 layers, 12 heads (12 KV) of 64).
const TINY: [Tiny; 4] = [
    Tiny {
        name: "tiny-50m:latest",
        params: "27.54M",
        quant: "F16",
        file_bytes: 55_142_400,
        block_count: 8,
        kv_heads: 8,
        head_dim: 64,
        overhead_bytes: 12_826_294,
        load_s: 0.26,
        prefill_tps: 2180.0,
        decode_tps: 193.0,
        measured: "/api/tags 55,142,582 B (GGUF 55,142,400 + manifest layers); /api/ps 139,271,862 B at 4096, \
103,620,278 at 2048; loads 0.25-0.51 s; warm load_duration 0.7-1.2 ms; decode 32-274 t/s",
    },
    Tiny {
        name: "tiny-50m:q8_0",
        params: "27.54M",
        quant: "Q8_0",
        file_bytes: 29_329_952,
        block_count: 8,
        kv_heads: 8,
        head_dim: 64,
        overhead_bytes: 12_822_801,
        load_s: 0.26,
        prefill_tps: 2120.0,
        decode_tps: 235.0,
        measured: "ollama create -q q8_0; /api/tags 29,330,103 B; /api/ps 113,455,921 B at 4096, 77,804,337 at 2048; \
loads 0.25-0.26 s; decode 205-263 t/s",
    },
    Tiny {
        name: "tiny-50m:q4_K_M",
        params: "27.54M",
        quant: "Q4_K_M",
        file_bytes: 17_873_472,
        block_count: 8,
        kv_heads: 8,
        head_dim: 64,
        overhead_bytes: 12_818_345,
        load_s: 0.26,
        prefill_tps: 2130.0,
        decode_tps: 238.0,
        measured: "ollama create -q q4_K_M; /api/tags 17,873,625 B; /api/ps 101,994,985 B at 4096, 66,343,401 at 2048; \
loads 0.25-0.27 s; decode 74-300 t/s",
    },
    Tiny {
        name: "tiny-150m:latest",
        params: "87.72M",
        quant: "F16",
        file_bytes: 175_518_784,
        block_count: 12,
        kv_heads: 12,
        head_dim: 64,
        overhead_bytes: 18_855_747,
        load_s: 0.51,
        prefill_tps: 890.0,
        decode_tps: 84.0,
        measured: "/api/tags 175,518,998 B; /api/ps 349,563,779 B at 4096, 271,969,155 at 2048; loads 0.25-0.51 s \
(one 2.3 s on a busy machine); decode 19-91 t/s",
    },
];

fn tiny_models() -> impl Iterator<Item = ModelSpec> {
    TINY.iter().map(|t| ModelSpec {
        name: t.name.to_string(),
        aliases: Vec::new(),
        family: "llama".into(),
        parameter_size: t.params.into(),
        quantization: t.quant.into(),
        file_bytes: t.file_bytes,
        block_count: t.block_count,
        kv_heads: t.kv_heads,
        head_dim: t.head_dim,
        context_length: 4096,
        prefill_tps: t.prefill_tps,
        decode_tps: t.decode_tps,
        capabilities: vec![Capability::Completion],
        embedding_length: None,
        source: format!("{TINY_SOURCE}; {}", t.measured),
        load_s: Some(t.load_s),
        overhead_bytes: Some(t.overhead_bytes),
        overhead_per_token: Some(1024),
    })
}

impl ModelSpec {
    /// E1's f16 KV cache per token of context: 2 (K and V) × layers × KV heads × head
    /// dimension × 2 bytes.
    pub fn kv_bytes_per_token(&self) -> u64 {
        2 * u64::from(self.block_count) * u64::from(self.kv_heads) * u64::from(self.head_dim) * 2
    }

    /// A stable `sha256:`-less 64-hex digest, derived from the name.
    pub fn digest(&self) -> String {
        let hash = Sha256::digest(self.name.as_bytes());
        hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The quantization as the tag writes it: `q4_0`, `q4_K_M`, `q8_0`, `fp16`.
    pub fn quant_tag(&self) -> String {
        match self.quantization.as_str() {
            "F16" => "fp16".to_string(),
            "F32" => "fp32".to_string(),
            "BF16" => "bf16".to_string(),
            other => {
                // `Q4_K_M` → `q4_K_M`: only the leading letter is lower-cased.
                let mut chars = other.chars();
                match chars.next() {
                    Some(c) => c.to_ascii_lowercase().to_string() + chars.as_str(),
                    None => String::new(),
                }
            }
        }
    }

    /// Whether the model has `cap`.
    pub fn has(&self, cap: Capability) -> bool {
        self.capabilities.contains(&cap)
    }

    /// Time to evaluate a prompt of `tokens`.
    pub fn prefill_time(&self, tokens: u64) -> Duration {
        tokens_time(tokens, self.prefill_tps)
    }

    /// Time to generate `tokens`.
    pub fn decode_time(&self, tokens: u64) -> Duration {
        tokens_time(tokens, self.decode_tps)
    }
}

fn tokens_time(tokens: u64, tps: f64) -> Duration {
    if tokens == 0 || tps.is_nan() || tps <= 0.0 || tps.is_infinite() {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(tokens as f64 / tps)
}

impl Catalogue {
    /// The built-in models: qwen2.5 3b/7b/14b, llama3.1:8b, llama3.2:3b and mistral:7b
    /// instruct in q4_0, q4_K_M, q8_0 and fp16, plus `nomic-embed-text:v1.5`,
    /// `llava:7b`, `qwen3:8b`, and the tiny test models measured on Ollama's CPU build
    /// (`tiny-50m`, `tiny-50m:q8_0`, `tiny-50m:q4_K_M`, `tiny-150m`).
    pub fn builtin() -> Catalogue {
        let mut models: Vec<ModelSpec> = FAMILIES.iter().flat_map(family_models).collect();
        models.extend(special_models());
        models.extend(tiny_models());
        Catalogue { models }
    }

    /// Finds a model by name or alias in any form Ollama accepts: a bare family
    /// (`qwen2.5`) means `qwen2.5:latest`, `library/` and `registry.ollama.ai/library/`
    /// prefixes and case do not matter.
    pub fn resolve(&self, model: &str) -> Option<&ModelSpec> {
        let key = name::key(model);
        let is = |n: &str| n == model || name::key(n) == key;
        self.models
            .iter()
            .find(|m| is(&m.name))
            .or_else(|| self.models.iter().find(|m| m.aliases.iter().any(|a| is(a))))
    }

    /// Index in `models` of what `resolve` finds.
    pub fn position(&self, name: &str) -> Option<usize> {
        let found = self.resolve(name)?;
        self.models.iter().position(|m| std::ptr::eq(m, found))
    }

    /// The same model in another quantization (`quant` in the tag form: `q4_K_M`,
    /// `q8_0`, `fp16`): the entry whose name is `spec`'s with the quantization suffix
    /// swapped; `spec` itself when it already is that quantization.
    pub fn with_quant(&self, spec: &ModelSpec, quant: &str) -> Option<&ModelSpec> {
        let own = spec.quant_tag();
        if own.eq_ignore_ascii_case(quant) {
            return self.models.iter().find(|m| m.name == spec.name);
        }
        let stem = spec.name.strip_suffix(&own)?;
        let wanted = format!("{stem}{quant}");
        self.models
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(&wanted))
    }

    /// This catalogue with `extra` entries replacing those of the same name, or added
    /// after them.
    pub fn with_overrides(mut self, extra: &[ModelSpec]) -> Catalogue {
        for spec in extra {
            match self.models.iter_mut().find(|m| m.name == spec.name) {
                Some(slot) => *slot = spec.clone(),
                None => self.models.push(spec.clone()),
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

    #[test]
    fn llama31_sizes_match_the_cited_figures() {
        let cat = Catalogue::builtin();
        for (tag, gib) in [("fp16", 14.96), ("q8_0", 7.95), ("q4_K_M", 4.58)] {
            let m = cat.resolve(&format!("llama3.1:8b-instruct-{tag}")).unwrap();
            let got = m.file_bytes as f64 / GIB;
            assert!((got - gib).abs() < 0.03, "{tag}: {got} GiB vs {gib}");
        }
        let m = cat.resolve("llama3.1:8b").unwrap();
        assert_eq!(m.kv_bytes_per_token(), 128 * 1024);
        assert!((m.decode_tps - 71.9).abs() < 1e-9);
    }

    #[test]
    fn aliases_and_bare_family_resolve_to_q4_k_m() {
        let cat = Catalogue::builtin();
        for alias in ["qwen2.5:7b", "qwen2.5:latest", "qwen2.5"] {
            assert_eq!(
                cat.resolve(alias).unwrap().name,
                "qwen2.5:7b-instruct-q4_K_M"
            );
        }
        assert_eq!(
            cat.resolve("nomic-embed-text").unwrap().name,
            "nomic-embed-text:v1.5"
        );
        assert!(cat.resolve("qwen2.5:7b-instruct-fp16").is_some());
        assert!(cat.resolve("mistral:7b-instruct-q8_0").is_some());
        assert!(cat.resolve("llama3.2:3b-instruct-q4_0").is_some());
        assert!(cat.resolve("qwen2.5:14b-instruct-q8_0").is_some());
        assert!(cat.resolve("llama2").is_none());
        assert!(cat.resolve("qwen2.5:1b").is_none());
    }

    #[test]
    fn names_are_unique() {
        let cat = Catalogue::builtin();
        let mut seen = std::collections::HashSet::new();
        for m in &cat.models {
            assert!(seen.insert(m.name.clone()), "duplicate {}", m.name);
            for a in &m.aliases {
                assert!(seen.insert(a.clone()), "duplicate alias {a}");
            }
            assert_eq!(m.digest().len(), 64);
            assert!(!m.source.is_empty());
        }
    }

    #[test]
    fn decode_scales_inversely_with_weight_bytes() {
        let cat = Catalogue::builtin();
        let q4 = cat.resolve("qwen2.5:7b-instruct-q4_K_M").unwrap();
        let f16 = cat.resolve("qwen2.5:7b-instruct-fp16").unwrap();
        let big = cat.resolve("qwen2.5:14b-instruct-q4_K_M").unwrap();
        assert!(q4.decode_tps > f16.decode_tps);
        assert!(q4.decode_tps > big.decode_tps);
        assert!(q4.decode_time(100) < f16.decode_time(100));
        assert_eq!(q4.prefill_time(0), Duration::ZERO);
        assert_eq!(q4.quant_tag(), "q4_K_M");
        assert_eq!(f16.quant_tag(), "fp16");
    }

    #[test]
    fn capabilities_of_special_models() {
        let cat = Catalogue::builtin();
        assert!(
            cat.resolve("nomic-embed-text:latest")
                .unwrap()
                .has(Capability::Embedding)
        );
        assert!(
            !cat.resolve("nomic-embed-text")
                .unwrap()
                .has(Capability::Completion)
        );
        assert!(cat.resolve("llava:7b").unwrap().has(Capability::Vision));
        assert!(cat.resolve("qwen3:8b").unwrap().has(Capability::Thinking));
    }

    #[test]
    fn tiny_models_match_the_cpu_build_measurements() {
        let cat = Catalogue::builtin();
        // /api/ps `size` of Ollama v0.32.15's CPU build at num_ctx 4096 and 2048.
        for (name, at_4096, at_2048) in [
            ("tiny-50m", 139_271_862, 103_620_278),
            ("tiny-50m:q8_0", 113_455_921, 77_804_337),
            ("tiny-50m:q4_K_M", 101_994_985, 66_343_401),
            ("tiny-150m", 349_563_779, 271_969_155),
        ] {
            let m = cat.resolve(name).unwrap();
            assert_eq!(
                crate::engine::sched::predicted_size(m, 4096, 1),
                at_4096,
                "{name}"
            );
            assert_eq!(
                crate::engine::sched::predicted_size(m, 2048, 1),
                at_2048,
                "{name}"
            );
            assert_eq!(m.context_length, 4096);
            assert_eq!(m.family, "llama");
            assert!(m.source.contains("CPU build"), "{name}");
        }
        assert_eq!(
            cat.resolve("tiny-50m").unwrap().kv_bytes_per_token(),
            16 * 1024
        );
        assert_eq!(
            cat.resolve("tiny-150m").unwrap().kv_bytes_per_token(),
            36 * 1024
        );
        for form in [
            "tiny-50m",
            "tiny-50m:latest",
            "TINY-50M",
            "library/tiny-50m",
        ] {
            assert_eq!(cat.resolve(form).unwrap().name, "tiny-50m:latest", "{form}");
        }
        assert_eq!(cat.resolve("tiny-50m").unwrap().file_bytes, 55_142_400);
        assert_eq!(cat.resolve("tiny-150m").unwrap().file_bytes, 175_518_784);
        assert_eq!(
            cat.resolve("tiny-50m:q4_K_M").unwrap().quant_tag(),
            "q4_K_M"
        );
        let c = crate::engine::sched::SchedConfig::default();
        let m = cat.resolve("tiny-50m").unwrap();
        assert!((c.load_secs(m, true) - 0.26).abs() < 1e-9);
        assert!(c.load_secs(m, false) > 0.26 && c.load_secs(m, false) < 0.3);
    }

    #[test]
    fn overrides_replace_by_name_or_extend() {
        let cat = Catalogue::builtin();
        let mut changed = cat.resolve("qwen2.5:7b").unwrap().clone();
        changed.decode_tps = 1.0;
        let mut added = changed.clone();
        added.name = "custom:1b".into();
        added.aliases.clear();
        let n = cat.models.len();
        let cat = cat.with_overrides(&[changed, added]);
        assert_eq!(cat.models.len(), n + 1);
        assert_eq!(cat.resolve("qwen2.5:7b").unwrap().decode_tps, 1.0);
        assert!(cat.resolve("custom:1b").is_some());
    }
}
