//! The simulator held to the real server: the same requests and the same short scenario
//! go to a real Ollama (v0.32.15, CPU build, `../shared/ollama`) and to `kabench sim
//! --gpus 0` (a CPU-only host with the tiny models' measured figures), and what must
//! agree is compared: error statuses and bodies, `done_reason`, the `/api/ps` fields and
//! their values (`size_vram` 0 included), expiry timing, the expiry a busy model lists, eviction order, and the cold
//! count per keep_alive of a run, and the odd values Ollama takes or refuses (numeric
//! keep_alive past a Go duration, fractional integer options, options of the wrong
//! type). Differences that cannot be closed are listed in the
//! README ("The simulator against the real server") with their rule ID.
//! Skips with one line where the real server is not available.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::{RealOllama, SimServer, read_json, run_ok};
use serde_json::Value;

/// Both servers, called the same way.
struct Pair {
    real: RealOllama,
    sim: SimServer,
}

impl Pair {
    fn start(name: &str, env: &[(&str, &str)], flags: &[&str]) -> Option<Pair> {
        let real = RealOllama::start(name, env)?;
        let mut all = vec!["--gpus", "0"];
        all.extend_from_slice(flags);
        Some(Pair {
            real,
            sim: SimServer::start(&all),
        })
    }

    /// The same call to both: (real, sim).
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> ((u16, String), (u16, String)) {
        (
            self.real.call(method, path, body),
            self.sim.call(method, path, body),
        )
    }

    fn ps(&self) -> (Vec<Value>, Vec<Value>) {
        let ((_, r), (_, s)) = self.call("GET", "/api/ps", None);
        let models = |b: &str| {
            serde_json::from_str::<Value>(b).expect("ps JSON")["models"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        };
        (models(&r), models(&s))
    }
}

fn json(body: &str) -> Value {
    serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn names(models: &[Value]) -> BTreeSet<String> {
    models
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

/// Seconds until `/api/ps` lists nothing, polled every 50 ms (at most 20 s).
fn seconds_until_empty(call: impl Fn() -> String) -> f64 {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if call().contains(r#""models":[]"#) {
            return start.elapsed().as_secs_f64();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f64::INFINITY
}

#[test]
fn errors_responses_ps_and_expiry_agree_with_the_real_server() {
    let Some(p) = Pair::start("diff-http", &[], &[]) else {
        return;
    };
    // H1–H4, KA4: statuses and bodies, byte for byte.
    for body in [
        r#"{"model":"tiny-50m","prompt":"hi","keep_alive":"-1"}"#,
        r#"{"model":"tiny-50m","prompt":"hi","keep_alive":"abc"}"#,
        r#"{"model":"tiny-50m","prompt":"hi","keep_alive":true}"#,
        r#"{"model":"nope","prompt":"hi"}"#,
        r#"{"prompt":"hi"}"#,
        r#"{"model":"tiny-50m","prompt":"hi","options":{"num_ctx":"x"}}"#,
        "",
    ] {
        let (real, sim) = p.call("POST", "/api/generate", Some(body));
        assert_eq!(real, sim, "POST /api/generate {body}");
    }
    let (real, sim) = p.call("POST", "/api/chat", Some(r#"{"messages":[]}"#));
    assert_eq!(real, sim, "chat without a model");
    // Bad JSON: the status agrees; the text is Go's decoder's own wording.
    let ((rs, _), (ss, _)) = p.call("POST", "/api/generate", Some("not json"));
    assert_eq!((rs, ss), (400, 400));

    // M2/M3: a generate that stops at num_predict; the same fields, same done_reason.
    let ask = r#"{"model":"tiny-50m","prompt":"hi","stream":false,"keep_alive":"2s","options":{"num_predict":3}}"#;
    let ((rs, r), (ss, s)) = p.call("POST", "/api/generate", Some(ask));
    let (r, s) = (json(&r), json(&s));
    assert_eq!((rs, ss), (200, 200));
    assert_eq!(r["done_reason"], s["done_reason"]);
    assert_eq!(r["model"], s["model"], "model echoes the request");
    assert_eq!(keys(&r), keys(&s), "fields of the done object");

    // P1/P2: the same /api/ps entry on a CPU host: name with tag, size_vram 0, size,
    // context length; expires_at about 2 s ahead on both.
    let (real, sim) = p.ps();
    assert_eq!((real.len(), sim.len()), (1, 1));
    let (r, s) = (&real[0], &sim[0]);
    assert_eq!(keys(r), keys(s), "fields of an /api/ps entry");
    for field in ["name", "model", "size_vram", "context_length"] {
        assert_eq!(r[field], s[field], "/api/ps {field}");
    }
    let (rsize, ssize) = (r["size"].as_f64().unwrap(), s["size"].as_f64().unwrap());
    assert!(
        (rsize - ssize).abs() / rsize < 0.02,
        "resident size within 2%: real {rsize}, sim {ssize}"
    );
    // T1/T4: gone about 2 s after the request ended, on both (timed one after the other).
    let real_gone = seconds_until_empty(|| p.real.call("GET", "/api/ps", None).1);
    let (_, _) = p.call("POST", "/api/generate", Some(ask));
    let sim_gone = seconds_until_empty(|| p.sim.call("GET", "/api/ps", None).1);
    assert!(
        (real_gone - sim_gone).abs() < 0.5,
        "expiry: real {real_gone:.2} s, sim {sim_gone:.2} s"
    );

    // P1 and model names: every form a request may use names the same model; the
    // response echoes the form, /api/ps lists the installed tag, on both.
    for form in [
        "tiny-50m",
        "tiny-50m:latest",
        "library/tiny-50m",
        "registry.ollama.ai/library/tiny-50m:latest",
        "TINY-50M",
    ] {
        let body = format!(
            r#"{{"model":"{form}","prompt":"hi","stream":false,"keep_alive":"5s","options":{{"num_predict":1}}}}"#
        );
        let ((rs, r), (ss, s)) = p.call("POST", "/api/generate", Some(&body));
        assert_eq!((rs, ss), (200, 200), "{form}");
        assert_eq!(json(&r)["model"], form);
        assert_eq!(json(&s)["model"], form);
        let (real, sim) = p.ps();
        assert_eq!(names(&real), names(&sim), "{form}");
        assert_eq!(
            names(&real).into_iter().collect::<Vec<_>>(),
            vec!["tiny-50m:latest"]
        );
    }

    // M7/E6: an empty prompt loads; keep_alive 0 with no prompt unloads.
    let ((_, r), (_, s)) = p.call("POST", "/api/generate", Some(r#"{"model":"tiny-50m"}"#));
    assert_eq!(json(&r)["done_reason"], json(&s)["done_reason"]);
    assert_eq!(json(&r)["done_reason"], "load");
    let unload = r#"{"model":"tiny-50m","keep_alive":0}"#;
    let ((_, r), (_, s)) = p.call("POST", "/api/generate", Some(unload));
    assert_eq!(json(&r)["done_reason"], "unload");
    assert_eq!(json(&s)["done_reason"], "unload");
}

#[test]
fn eviction_order_agrees_with_the_real_server() {
    // E5 with no GPU: 3 models at most; the fourth evicts one, the same one on both.
    let Some(p) = Pair::start("diff-evict", &[], &[]) else {
        return;
    };
    for model in ["tiny-50m", "tiny-50m:q8_0", "tiny-50m:q4_K_M", "tiny-150m"] {
        let body = format!(
            r#"{{"model":"{model}","prompt":"hi","stream":false,"keep_alive":-1,"options":{{"num_predict":1}}}}"#
        );
        let ((rs, _), (ss, _)) = p.call("POST", "/api/generate", Some(&body));
        assert_eq!((rs, ss), (200, 200), "{model}");
    }
    let (real, sim) = p.ps();
    assert_eq!(names(&real).len(), 3, "{real:?}");
    assert_eq!(names(&real), names(&sim), "the same three stay resident");
}

/// A short gaps scenario: constant 5 s gaps, keep_alive 0 / 1s / -1 (a cold request on a busy 2-core machine can take 3 s).
const GAPS: &str = r#"
name = "diff-gaps"
seed = 2
[sim]
gpus = 0
[[stream]]
name = "chat"
model = "tiny-50m"
api = "generate"
num_ctx = 4096
prompt_tokens = 20
max_tokens = 4
arrival = { kind = "constant", rate = "0.2/s" }
[run]
requests = 3
timeout = "30s"
[sweep]
keep_alive = ["0", "1s", -1]
"#;

#[test]
fn cold_counts_per_keep_alive_agree_with_the_real_server() {
    let Some(real) = RealOllama::start("diff-gaps", &[]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("gaps.toml");
    std::fs::write(&file, GAPS).unwrap();
    let cold = |target: &str, out: &str| -> Vec<u64> {
        let out = tmp.path().join(out);
        run_ok(&[
            "run",
            file.to_str().unwrap(),
            "--target",
            target,
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ]);
        read_json(&out.join("summary.json"))["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["streams"][0]["cold"].as_u64().unwrap())
            .collect()
    };
    let on_real = cold(&real.url, "real");
    let on_sim = cold("sim", "sim");
    assert_eq!(on_real, vec![3, 3, 1], "the real server");
    assert_eq!(on_sim, on_real, "the simulator agrees with the real server");
}

/// True when `/api/ps` (from `call`) still lists a model 1 s after the last request
/// ended, polled every 50 ms: the model was kept, not unloaded when idle.
fn still_loaded(call: impl Fn() -> String) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        if call().contains(r#""models":[]"#) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

#[test]
fn ka2_numeric_keep_alive_past_a_go_duration_agrees_with_the_real_server() {
    // Ollama v0.32.15 turns a number of seconds into `time.Duration(s * 1e9)`: past
    // 2^63 ns (292 years) it overflows into a negative duration, which it takes (200)
    // and unloads the model as soon as it is idle; an empty prompt with such a number
    // loads (only an exact 0 unloads, E6). Below a nanosecond it is an exact 0.
    let Some(p) = Pair::start("diff-ka-overflow", &[], &[]) else {
        return;
    };
    let ask = |ka: &str| {
        format!(
            r#"{{"model":"tiny-50m","prompt":"hi","stream":false,"keep_alive":{ka},"options":{{"num_predict":1}}}}"#
        )
    };
    let empty = |ka: &str| format!(r#"{{"model":"tiny-50m","keep_alive":{ka}}}"#);
    // (body, done_reason, still loaded after) as the real server answered.
    let cases = [
        (ask("9223372036"), "length", true),
        (ask("1e20"), "length", false),
        (ask("9.3e9"), "length", false),
        (ask("1e300"), "length", false),
        (ask("9223372037"), "length", false),
        (empty("1e20"), "load", false),
        (empty("1e-10"), "unload", false),
    ];
    for (body, reason, loaded) in cases {
        let ((rs, r), (ss, s)) = p.call("POST", "/api/generate", Some(&body));
        assert_eq!((rs, ss), (200, 200), "{body}: real {r}, sim {s}");
        assert_eq!(json(&r)["done_reason"], reason, "real: {body}");
        assert_eq!(json(&s)["done_reason"], reason, "sim: {body}");
        let real = still_loaded(|| p.real.call("GET", "/api/ps", None).1);
        let sim = still_loaded(|| p.sim.call("GET", "/api/ps", None).1);
        assert_eq!(real, loaded, "real server, loaded after {body}");
        assert_eq!(sim, real, "simulator, loaded after {body}");
    }
    // The same on /api/chat.
    let chat = r#"{"model":"tiny-50m","stream":false,"messages":[{"role":"user","content":"hi"}],"keep_alive":1e300,"options":{"num_predict":1}}"#;
    let ((rs, r), (ss, s)) = p.call("POST", "/api/chat", Some(chat));
    assert_eq!((rs, ss), (200, 200), "{chat}: real {r}, sim {s}");
    let real = still_loaded(|| p.real.call("GET", "/api/ps", None).1);
    let sim = still_loaded(|| p.sim.call("GET", "/api/ps", None).1);
    assert_eq!((real, sim), (false, false), "loaded after {chat}");
    // A number no float64 holds is not JSON Ollama reads: 400 on both (the wording is
    // each decoder's own, H2).
    let ((rs, _), (ss, _)) = p.call("POST", "/api/generate", Some(&empty("1e400")));
    assert_eq!((rs, ss), (400, 400), "keep_alive 1e400");
}

#[test]
fn h4_option_values_agree_with_the_real_server() {
    // Go's `Options.FromMap`: any JSON number fills an integer option (truncated), a
    // wrong type is 500 with the option's name, unknown options are ignored; a
    // num_ctx under 4 (or past int64) becomes 4; an unload request never reads them.
    let Some(p) = Pair::start("diff-options", &[], &[]) else {
        return;
    };
    let ask = |options: &str| {
        format!(
            r#"{{"model":"tiny-50m","prompt":"hi","stream":false,"keep_alive":"1m","options":{{{options}}}}}"#
        )
    };
    // 200, and what the server made of the value: /api/ps context_length or eval_count.
    for (options, field, value) in [
        (r#""num_ctx":1.5,"num_predict":1"#, "context_length", 4),
        (r#""num_ctx":1e30,"num_predict":1"#, "context_length", 4),
        (
            r#""num_ctx":2048.5,"num_predict":1"#,
            "context_length",
            2048,
        ),
        (r#""num_predict":1.7"#, "eval_count", 1),
        (
            r#""num_predict":2,"tfs_z":"x","penalize_newline":1"#,
            "eval_count",
            2,
        ),
    ] {
        let body = ask(options);
        let ((rs, r), (ss, s)) = p.call("POST", "/api/generate", Some(&body));
        assert_eq!((rs, ss), (200, 200), "{body}: real {r}, sim {s}");
        let (r, s) = if field == "eval_count" {
            (json(&r)[field].clone(), json(&s)[field].clone())
        } else {
            let (real, sim) = p.ps();
            (real[0][field].clone(), sim[0][field].clone())
        };
        assert_eq!(r, value, "real server, {field} after {body}");
        assert_eq!(s, r, "simulator, {field} after {body}");
    }
    // 500 with Ollama's text, byte for byte.
    for options in [
        r#""temperature":"hot""#,
        r#""temperature":true"#,
        r#""num_ctx":"4096""#,
        r#""top_k":"5""#,
        r#""use_mmap":"yes""#,
        r#""stop":"x""#,
        r#""stop":["a",1]"#,
    ] {
        let body = ask(options);
        let ((rs, r), (ss, s)) = p.call("POST", "/api/generate", Some(&body));
        assert_eq!(rs, 500, "real server: {body}: {r}");
        assert_eq!((ss, s.trim()), (rs, r.trim()), "{body}");
    }
    // The load-only request reads them; the unload request does not.
    let load = r#"{"model":"tiny-50m","options":{"temperature":"hot"}}"#;
    let ((rs, r), (ss, s)) = p.call("POST", "/api/generate", Some(load));
    assert_eq!(rs, 500, "{r}");
    assert_eq!((ss, s.trim()), (rs, r.trim()), "{load}");
    let unload = r#"{"model":"tiny-50m","keep_alive":0,"options":{"temperature":"hot"}}"#;
    let ((rs, r), (ss, s)) = p.call("POST", "/api/generate", Some(unload));
    assert_eq!((rs, ss), (200, 200), "{unload}: real {r}, sim {s}");
    assert_eq!(json(&r)["done_reason"], "unload");
    assert_eq!(json(&s)["done_reason"], "unload");
}

/// A server's call, as `RealOllama::call` and `SimServer::call` make it.
type Call<'a> = &'a (dyn Fn(&str, &str, Option<&str>) -> (u16, String) + Sync);

/// `expires_at` of the one model `/api/ps` lists, as written.
fn expiry(call: Call) -> String {
    let (_, body) = call("GET", "/api/ps", None);
    let v = json(&body);
    v["models"][0]["expires_at"]
        .as_str()
        .unwrap_or_else(|| panic!("one model listed: {body}"))
        .to_string()
}

/// `expires_at` as `/api/ps` lists it 1 s into a long request asking `keep_alive` (a
/// JSON value), while that request runs.
fn expiry_while_busy(call: Call, keep_alive: &str) -> String {
    let body = format!(
        r#"{{"model":"tiny-50m","prompt":"hi","stream":false,"keep_alive":{keep_alive},"options":{{"num_predict":1500,"temperature":1}}}}"#
    );
    std::thread::scope(|s| {
        let sent = s.spawn(|| call("POST", "/api/generate", Some(&body)));
        std::thread::sleep(Duration::from_secs(1));
        let during = expiry(call);
        let (status, reply) = sent.join().unwrap();
        assert_eq!(status, 200, "{reply}");
        during
    })
}

/// Seconds from now to an `expires_at`.
fn seconds_left(at: &str) -> f64 {
    let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{e}: {at}"));
    (at - time::OffsetDateTime::now_utc()).as_seconds_f64()
}

#[test]
fn p4_a_busy_model_lists_the_expiry_it_had_when_it_went_idle_on_both_servers() {
    // The simulator's scheduler hears of a request's end 2 s after its reply (a busy
    // host); the real server's long generations keep it busy instead.
    let Some(pair) = Pair::start("p4-busy", &[], &["--fault-finish-lag", "2s"]) else {
        return;
    };
    let real = |m: &str, p: &str, b: Option<&str>| pair.real.call(m, p, b);
    let sim = |m: &str, p: &str, b: Option<&str>| pair.sim.call(m, p, b);
    let settle = || std::thread::sleep(Duration::from_millis(2500));
    for (who, call) in [("real", &real as Call), ("sim", &sim as Call)] {
        let short = r#"{"model":"tiny-50m","prompt":"hi","stream":false,"keep_alive":"30s","options":{"num_predict":2}}"#;
        assert_eq!(call("POST", "/api/generate", Some(short)).0, 200, "{who}");
        settle();
        let idle_30s = expiry(call);
        // Asking forever of a model idle with a deadline: the deadline, until it ends.
        let during = expiry_while_busy(call, "-1");
        assert_eq!(during, idle_30s, "{who}: busy after idling with a deadline");
        settle();
        let idle_forever = expiry(call);
        assert!(
            seconds_left(&idle_forever) > 100.0 * 365.0 * 86400.0,
            "{who}: {idle_forever}"
        );
        // Asking 11 s of a model idle forever: the same forever instant, until it ends.
        let during = expiry_while_busy(call, r#""11s""#);
        assert_eq!(during, idle_forever, "{who}: busy after idling forever");
        settle();
        let left = seconds_left(&expiry(call));
        assert!(
            (5.0..11.5).contains(&left),
            "{who}: 11 s set, {left} s left"
        );
    }
}
