//! Every validation message of the scenario format: each test names the line, the
//! dotted key and a part of the message that says what is allowed.
//! Over 500 lines: one test per validation message.

use std::path::Path;

use super::{Scenario, ScenarioError, parse};

fn p(text: &str) -> std::result::Result<Scenario, ScenarioError> {
    parse(text, Path::new("scenarios/x.toml"))
}

const OK_STREAM: &str =
    "[[stream]]\nmodel = \"m\"\narrival = { kind = \"poisson\", rate = \"1/s\" }\n";
const OK_RUN: &str = "[run]\nrequests = 3\n";

/// Asserts the error's line, key and a part of its message, and that the display
/// carries them all.
#[track_caller]
fn fails(text: &str, line: usize, key: &str, says: &str) {
    let e = p(text).expect_err("must fail");
    assert_eq!(e.path, Path::new("scenarios/x.toml"));
    assert_eq!(e.key.as_deref(), Some(key), "key of: {e}");
    assert_eq!(e.line, Some(line), "line of: {e}");
    assert!(e.column.is_some(), "column of: {e}");
    assert!(e.message.contains(says), "message of: {e}");
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("scenarios/x.toml:{line}:")),
        "{shown}"
    );
    assert!(shown.contains(&format!("key `{key}`")), "{shown}");
}

#[test]
fn syntax_and_unknown_keys_name_line_and_key() {
    fails("name = \"a\"\nseed = \n", 2, "seed", "");
    fails(
        &format!("{OK_STREAM}{OK_RUN}bogus = 1\n"),
        6,
        "run.bogus",
        "unknown field `bogus`, expected one of",
    );
    fails(
        &format!("[[stream]]\nmodel = \"m\"\nmdoel = 1\n{OK_RUN}"),
        3,
        "stream[0].mdoel",
        "unknown field",
    );
    fails(
        &format!("{OK_STREAM}{OK_RUN}[sim]\nvramm = \"1GiB\"\n"),
        7,
        "sim.vramm",
        "expected one of `vram`",
    );
    fails(
        &format!("{OK_STREAM}{OK_RUN}[sweeps]\n"),
        6,
        "sweeps",
        "unknown field `sweeps`",
    );
    fails(
        "[[stream]]\nmodel = \"m\"\narrival = { kind = \"poisson\", rat = \"1/s\" }\n[run]\nrequests = 3\n",
        3,
        "stream[0].arrival.rat",
        "unknown field `rat`",
    );
    fails(
        &format!("{OK_STREAM}[run]\nrequests = \"3\"\n"),
        5,
        "run.requests",
        "write a whole number",
    );
    fails(
        &format!("{OK_STREAM}{OK_RUN}[run]\n"),
        6,
        "run",
        "duplicate",
    );
}

#[test]
fn bad_values_name_line_key_and_what_is_allowed() {
    let stream = |arrival: &str| {
        format!("name = \"s\"\n[[stream]]\nmodel = \"m\"\narrival = {arrival}\n{OK_RUN}")
    };
    fails(
        &stream("{ kind = \"poisson\", rate = \"fast\" }"),
        4,
        "stream[0].arrival.rate",
        "bad rate \"fast\": write requests per unit of time",
    );
    fails(
        &stream("{ kind = \"poisson\", rate = 0 }"),
        4,
        "stream[0].arrival.rate",
        "a positive number",
    );
    fails(
        &stream("{ kind = \"poisson\" }"),
        4,
        "stream[0].arrival.rate",
        "missing key `rate`",
    );
    fails(
        &stream("{ rate = \"1/s\" }"),
        4,
        "stream[0].arrival.kind",
        "\"constant\", \"poisson\", \"gamma\", \"onoff\" or \"trace\"",
    );
    fails(
        &stream("{ kind = \"burst\", rate = \"1/s\" }"),
        4,
        "stream[0].arrival.kind",
        "unknown arrival kind \"burst\"",
    );
    fails(
        &stream("{ kind = \"gamma\", rate = \"1/s\", cv = 0 }"),
        4,
        "stream[0].arrival.cv",
        "positive coefficient of variation",
    );
    fails(
        &stream("{ kind = \"gamma\", rate = \"1/s\", cv = -1.5 }"),
        4,
        "stream[0].arrival.cv",
        "bad cv -1.5",
    );
    fails(
        &stream("{ kind = \"poisson\", rate = \"1/s\", cv = 2 }"),
        4,
        "stream[0].arrival.cv",
        "does not apply to kind = \"poisson\"",
    );
    fails(
        &stream("{ kind = \"onoff\", rate = \"1/s\", on = \"10s\" }"),
        4,
        "stream[0].arrival.off",
        "off = \"10m\"",
    );
    fails(
        &stream("{ kind = \"onoff\", rate = \"1/s\", on = \"ten\", off = 1 }"),
        4,
        "stream[0].arrival.on",
        "bad duration \"ten\"",
    );
    fails(
        &stream("{ kind = \"trace\", file = \"no/such.csv\" }"),
        4,
        "stream[0].arrival.file",
        "cannot read trace",
    );
    fails(
        &stream("{ kind = \"trace\" }"),
        4,
        "stream[0].arrival.file",
        "missing key `file`",
    );
    fails(
        &stream("{ kind = \"trace\", file = \"t.csv\", rate = \"1/s\" }"),
        4,
        "stream[0].arrival.rate",
        "does not apply to kind = \"trace\"",
    );
    fails(
        &stream("{ kind = \"trace\", file = \"t.csv\", time_scale = 0 }"),
        4,
        "stream[0].arrival.time_scale",
        "positive factor",
    );

    let with = |line: &str| {
        format!(
            "[[stream]]\nmodel = \"m\"\n{line}\narrival = {{ kind = \"poisson\", rate = \"1/s\" }}\n{OK_RUN}"
        )
    };
    fails(
        &with("keep_alive = \"5 minutes\""),
        3,
        "stream[0].keep_alive",
        "bad keep_alive \"5 minutes\"",
    );
    fails(
        &with("api = \"completions\""),
        3,
        "stream[0].api",
        "write \"generate\", \"chat\" or \"embed\"",
    );
    fails(
        &with("num_ctx = 0"),
        3,
        "stream[0].num_ctx",
        "raise it to a context of 4",
    );
    fails(
        &with("prompt = \"hi\"\nprompt_tokens = 5"),
        3,
        "stream[0].prompt",
        "keep one",
    );
    fails(
        &with("prompt_tokens = 0"),
        3,
        "stream[0].prompt_tokens",
        "at least 1",
    );
    fails(
        &with("max_tokens = 0"),
        3,
        "stream[0].max_tokens",
        "num_predict",
    );
    fails(
        &with("api = \"embed\"\nimages = 1"),
        4,
        "stream[0].images",
        "vision",
    );
    fails(
        &with("api = \"embed\"\nthink = true"),
        4,
        "stream[0].think",
        "not to embed",
    );
    fails(&with("name = \"\""), 3, "stream[0].name", "empty name");

    fails(
        "name = \"a\"\n\n[[stream]]\nname = \"x\"\narrival = { kind = \"poisson\", rate = \"1/s\" }\n[run]\nrequests = 3\n",
        3,
        "stream[0].model",
        "missing key `model`: write the Ollama model tag",
    );
    fails(
        "[[stream]]\nmodel = \"m\"\n[run]\nrequests = 3\n",
        1,
        "stream[0].arrival",
        "missing key `arrival`",
    );
    fails(
        &format!(
            "{OK_STREAM}[[stream]]\nname = \"stream1\"\nmodel = \"n\"\narrival = {{ kind = \"poisson\", rate = \"1/s\" }}\n{OK_RUN}"
        ),
        5,
        "stream[1].name",
        "duplicate stream name",
    );
    fails(
        "name = \"a\"\n[run]\nrequests = 3\n",
        1,
        "stream",
        "no streams",
    );
}

#[test]
fn model_placeholders_need_their_axis() {
    let s = "[[stream]]\nmodel = \"qwen2.5:7b-{quant}\"\narrival = { kind = \"poisson\", rate = \"1/s\" }\n[run]\nrequests = 3\n";
    fails(
        s,
        2,
        "stream[0].model",
        "contains {quant} but [sweep] has no quant axis",
    );
    fails(
        &s.replace("{quant}", "{size}"),
        2,
        "stream[0].model",
        "unknown placeholder \"{size}\"",
    );
    fails(
        &format!("{OK_STREAM}{OK_RUN}[sweep]\nquant = [\"q8_0\"]\n"),
        7,
        "sweep.quant",
        "no model contains `{quant}`",
    );
    fails(
        &format!(
            "[[stream]]\nmodel = \"\"\narrival = {{ kind = \"poisson\", rate = \"1/s\" }}\n{OK_RUN}"
        ),
        2,
        "stream[0].model",
        "empty model",
    );
}

#[test]
fn run_and_sweep_values_are_checked() {
    fails(
        &format!("{OK_STREAM}[run]\nrequests = 0\n"),
        5,
        "run.requests",
        "at least 1",
    );
    fails(
        &format!("{OK_STREAM}[run]\nrequests = 3\nduration = \"1m\"\n"),
        6,
        "run.duration",
        "both `requests` and `duration`",
    );
    fails(
        &format!("{OK_STREAM}[run]\nwarmup = 1\n"),
        4,
        "run.requests",
        "requests = N",
    );
    fails(OK_STREAM, 1, "run.requests", "missing key");
    fails(
        &format!("{OK_STREAM}[run]\nduration = \"0s\"\n"),
        5,
        "run.duration",
        "longer than 0",
    );
    fails(
        &format!("{OK_STREAM}{OK_RUN}timeout = \"soon\"\n"),
        6,
        "run.timeout",
        "bad duration \"soon\"",
    );
    fails(
        &format!("{OK_STREAM}{OK_RUN}timeout = -3\n"),
        6,
        "run.timeout",
        "zero or more",
    );
    fails(
        &format!("{OK_STREAM}{OK_RUN}concurrency = 0\n"),
        6,
        "run.concurrency",
        "at least 1",
    );
    fails(
        &format!("{OK_STREAM}{OK_RUN}[sweep]\nkeep_alive = [\"1s\", \"x\"]\n"),
        7,
        "sweep.keep_alive[1]",
        "bad keep_alive \"x\"",
    );
    fails(
        &format!("{OK_STREAM}{OK_RUN}[sweep]\nkeep_alive = [\"1s\",\n  \"1s\"]\n"),
        8,
        "sweep.keep_alive[1]",
        "duplicate sweep value",
    );
    fails(
        &format!("{OK_STREAM}{OK_RUN}[sweep]\nrate = [\"1/s\", \"fast\"]\n"),
        7,
        "sweep.rate[1]",
        "bad rate \"fast\"",
    );
    fails(
        &format!("{OK_STREAM}{OK_RUN}[sweep]\nmodel = [\"\"]\n"),
        7,
        "sweep.model[0]",
        "empty model",
    );
}

#[test]
fn other_sections_are_checked() {
    let base = format!("{OK_STREAM}{OK_RUN}");
    fails(
        &format!("{base}[target]\nkind = \"vllm\"\n"),
        7,
        "target.kind",
        "write \"sim\", \"ollama\" or \"llama-server\"",
    );
    fails(
        &format!("{base}[target]\nurl = \"http://x\"\n"),
        6,
        "target.kind",
        "missing key `kind`",
    );
    fails(
        &format!("{base}[target]\nkind = \"sim\"\nurl = \"http://x\"\n"),
        8,
        "target.url",
        "only to kind = \"ollama\"",
    );
    fails(
        &format!("{base}[sim]\nvram = \"24 parsecs\"\n"),
        7,
        "sim.vram",
        "bad size",
    );
    fails(
        &format!("{base}[sim]\ncalibrate = \"no/such/run\"\n"),
        7,
        "sim.calibrate",
        "scenarios/no/such/run is not a kabench run folder",
    );
    fails(
        &format!("{base}[sim]\nwarm_overhead = [\"2ms\"]\n"),
        7,
        "sim.warm_overhead",
        "write two durations",
    );
    assert!(
        p(&format!("{base}[sim]\ngpus = 0\n")).is_ok(),
        "0 GPUs: a CPU-only host"
    );
    fails(
        &format!("{base}[sim]\nkeep_alive = \"forever\"\n"),
        7,
        "sim.keep_alive",
        "bad keep_alive",
    );
    fails(
        &format!("{base}[sim]\nload_timeout = \"soon\"\n"),
        7,
        "sim.load_timeout",
        "bad duration",
    );
    fails(
        &format!("{base}[sim.faults]\nerror_500 = 1.5\n"),
        7,
        "sim.faults.error_500",
        "from 0 to 1",
    );
    fails(
        &format!("{base}[telemetry]\nsources = [\"nvml\", \"dcgm\"]\n"),
        7,
        "telemetry.sources[1]",
        "\"nvml\", \"ollama_ps\", \"rss\", \"prometheus\", \"sim\"",
    );
    fails(
        &format!("{base}[telemetry]\ninterval = \"0ms\"\n"),
        7,
        "telemetry.interval",
        "longer than 0",
    );
    fails(
        &format!("{base}[telemetry]\nsources = [\"prometheus\"]\n"),
        6,
        "telemetry.prometheus_url",
        "needs prometheus_url",
    );
    fails(
        &format!("{base}[cost]\nvram_gb_hour = -1\n"),
        7,
        "cost.vram_gb_hour",
        "zero or more",
    );
    fails(
        &format!("{base}[cost]\nwait_second = 0\n"),
        7,
        "cost.wait_second",
        "above 0",
    );
    fails(
        &format!("{base}[slo]\nttft_p99 = \"fast\"\n"),
        7,
        "slo.ttft_p99",
        "bad duration",
    );
    fails(
        &format!("{base}[swarm]\nusers = 0\n"),
        7,
        "swarm.users",
        "at least 1",
    );
    fails(
        &format!("{base}[swarm]\nhatch_rate = 0\n"),
        7,
        "swarm.hatch_rate",
        "above 0",
    );
    fails(
        &format!("{base}[swarm]\nthink_time = {{ min = \"5s\", max = \"1s\" }}\n"),
        7,
        "swarm.think_time.max",
        "shorter than min",
    );
    fails(
        &format!("{base}[swarm]\nthink_time = {{ mean = \"5s\" }}\n"),
        7,
        "swarm.think_time.mean",
        "unknown field `mean`",
    );
    fails(&format!("name = \"\"\n{base}"), 1, "name", "empty name");
}

#[test]
fn sweep_keep_alive_values_are_duplicates_by_meaning() {
    fails(
        &format!("{OK_STREAM}{OK_RUN}[sweep]\nkeep_alive = [\"60s\", \"1m\", \"1m0s\"]\n"),
        7,
        "sweep.keep_alive[1]",
        "duplicate sweep value \"1m\": it means the same as \"60s\"",
    );
    fails(
        &format!("{OK_STREAM}{OK_RUN}[sweep]\nkeep_alive = [\"1s\", 60, \"1m0s\"]\n"),
        7,
        "sweep.keep_alive[2]",
        "\"1m0s\": it means the same as \"60\"",
    );
    fails(
        &format!("{OK_STREAM}{OK_RUN}[sweep]\nkeep_alive = [-1, \"-5m\"]\n"),
        7,
        "sweep.keep_alive[1]",
        "means the same as \"-1\"",
    );
    fails(
        &format!("{OK_STREAM}{OK_RUN}[sweep]\nrate = [\"1/s\", \"60/m\"]\n"),
        7,
        "sweep.rate[1]",
        "means the same as \"1/s\"",
    );
    assert!(
        p(&format!(
            "{OK_STREAM}{OK_RUN}[sweep]\nkeep_alive = [\"0\", \"1m\", \"61s\", -1]\n"
        ))
        .is_ok()
    );
}

#[test]
fn keep_alive_past_a_go_duration_is_rejected_never_panics() {
    let ka = |v: &str| format!("{OK_STREAM}{OK_RUN}[sweep]\nkeep_alive = [{v}]\n");
    fails(
        &ka("\"9999999999999999h\""),
        7,
        "sweep.keep_alive[0]",
        "time: invalid duration",
    );
    fails(
        &ka("1e20"),
        7,
        "sweep.keep_alive[0]",
        "Ollama accepts it (HTTP 200)",
    );
    fails(
        &ka("1.7e308"),
        7,
        "sweep.keep_alive[0]",
        "unloaded as soon as it is idle",
    );
    fails(
        "[[stream]]\nmodel = \"m\"\nkeep_alive = 1e20\narrival = { kind = \"poisson\", rate = \"1/s\" }\n[run]\nrequests = 3\n",
        3,
        "stream[0].keep_alive",
        "write -1 (or any negative number) to keep the model loaded forever",
    );
    assert!(p(&ka("\"2562047h\"")).is_ok());
}

#[test]
fn rates_and_plan_sizes_are_bounded() {
    let with_rate = |rate: &str, run: &str| {
        format!(
            "[[stream]]\nmodel = \"m\"\narrival = {{ kind = \"poisson\", rate = \"{rate}\" }}\n{run}"
        )
    };
    fails(
        &with_rate("1e-300/s", OK_RUN),
        3,
        "stream[0].arrival.rate",
        "too low",
    );
    fails(
        &with_rate("1e-10/s", OK_RUN),
        3,
        "stream[0].arrival.rate",
        "at least 1 per 30 days",
    );
    // 1000 requests at 1/h: about 42 days.
    fails(
        &with_rate("1/h", "[run]\nrequests = 1000\n"),
        3,
        "stream[0].arrival.rate",
        "would send for about 42 days",
    );
    fails(
        &with_rate("1/s", "[run]\nrequests = 1000000000\n"),
        5,
        "run.requests",
        "more than kabench plans (1000000)",
    );
    fails(
        &with_rate("1/s", "[run]\nduration = \"100000000h\"\n"),
        5,
        "run.duration",
        "longer than a cell may last (30 days)",
    );
    fails(
        &with_rate("1/s", "[run]\nduration = 1e30\n"),
        5,
        "run.duration",
        "bad duration",
    );
    fails(
        &with_rate("1000/s", "[run]\nduration = \"20d\"\n"),
        3,
        "stream[0].arrival.rate",
        "more than kabench plans per stream and cell",
    );
    fails(
        &format!(
            "{}[sweep]\nrate = [\"1/s\", \"1e-12/s\"]\n",
            with_rate("1/s", OK_RUN)
        ),
        7,
        "sweep.rate[1]",
        "too low",
    );
    assert!(p(&with_rate("1/h", "[run]\nrequests = 100\n")).is_ok());
    assert!(p(&with_rate("1/s", "[run]\nduration = \"1h\"\n")).is_ok());
}

#[test]
fn a_target_url_the_client_cannot_use_is_named_at_its_key() {
    let with_url =
        |u: &str| format!("{OK_STREAM}{OK_RUN}[target]\nkind = \"ollama\"\nurl = \"{u}\"\n");
    fails(
        &with_url("ftp://[::1"),
        8,
        "target.url",
        "bad url \"ftp://[::1\"",
    );
    fails(
        &with_url("http://[::1"),
        8,
        "target.url",
        "write an Ollama address",
    );
    fails(
        &with_url("http://exa mple:1"),
        8,
        "target.url",
        "not a host name",
    );
    assert!(p(&with_url("[::1]:11434")).is_ok());
    assert!(p(&with_url(":11434")).is_ok());
    assert!(p(&with_url("http://127.0.0.1:11434")).is_ok());
    assert!(p(&with_url("localhost")).is_ok());
}

#[test]
fn a_fleet_of_targets_and_the_shard_split_are_checked() {
    let ok = p(&format!(
        "[target]\nkind = \"ollama\"\nurls = [\"http://a:11434\", \"b:11434\"]\n{OK_STREAM}{OK_RUN}shard_by = \"target\"\n"
    ))
    .unwrap();
    assert_eq!(
        ok.target,
        Some(super::TargetSpec::Fleet {
            urls: vec!["http://a:11434".into(), "b:11434".into()]
        })
    );
    assert_eq!(ok.run.shard_by, super::ShardBy::Target);
    assert_eq!(
        p(&format!("{OK_STREAM}{OK_RUN}")).unwrap().run.shard_by,
        super::ShardBy::Request
    );
    fails(
        &format!("{OK_STREAM}{OK_RUN}shard_by = \"host\"\n"),
        6,
        "run.shard_by",
        "write \"request\", \"stream\" or \"target\"",
    );
    fails(
        &format!("[target]\nkind = \"sim\"\nurls = [\"a:1\"]\n{OK_STREAM}{OK_RUN}"),
        3,
        "target.urls",
        "applies only to kind = \"ollama\"",
    );
    fails(
        &format!("[target]\nkind = \"ollama\"\nurls = []\n{OK_STREAM}{OK_RUN}"),
        3,
        "target.urls",
        "list at least one Ollama address",
    );
    fails(
        &format!("[target]\nkind = \"ollama\"\nurls = [\"a:1\", \"ftp://b\"]\n{OK_STREAM}{OK_RUN}"),
        3,
        "target.urls[1]",
        "bad url \"ftp://b\"",
    );
}

#[test]
fn a_stream_name_that_cannot_be_a_file_name_is_refused_at_its_key() {
    for bad in ["../../x", "/etc/passwd", "a\\\\b", ".."] {
        fails(
            &format!(
                "name = \"s\"\n[[stream]]\nname = \"{bad}\"\nmodel = \"m\"\narrival = {{ kind = \"poisson\", rate = \"1/s\" }}\n{OK_RUN}"
            ),
            3,
            "stream[0].name",
            "cannot be a file name",
        );
    }
}

const LLAMA: &str = "kind = \"llama-server\"\ncommand = [\"llama-server\", \"-m\", \"{model_path}\", \"--sleep-idle-seconds\", \"{sleep_idle_seconds}\", \"--port\", \"{port}\"]\nmodel_path = \"m.gguf\"\n";

#[test]
fn server_keys_name_line_and_key() {
    let base = format!("{OK_STREAM}{OK_RUN}");
    // The table header is line 6, its first key line 7.
    fails(
        &format!("{base}[target]\nkind = \"llama-server\"\n"),
        7,
        "target.kind",
        "missing key `command`",
    );
    fails(
        &format!("{base}[target]\nkind = \"llama-server\"\ncommand = [\"srv\", \"{{ttl}}\"]\n"),
        8,
        "target.command",
        "unknown placeholder {ttl}",
    );
    fails(
        &format!("{base}[target]\nkind = \"llama-server\"\ncommand = [\"srv\", \"-m\", \"x\"]\n"),
        8,
        "target.command",
        "no {port}",
    );
    fails(
        &format!(
            "{base}[target]\nkind = \"llama-server\"\ncommand = [\"srv\", \"-m\", \"{{model_path}}\", \"--port\", \"{{port}}\"]\n"
        ),
        8,
        "target.command",
        "no `model_path`",
    );
    fails(
        &format!("{base}[target]\nkind = \"ollama\"\ncommand = [\"x\"]\n"),
        8,
        "target.command",
        "only to kind = \"llama-server\"",
    );
    fails(
        &format!("{base}[target]\n{LLAMA}idle_unload = [\"1.5s\"]\n"),
        10,
        "target.idle_unload[0]",
        "whole seconds",
    );
    fails(
        &format!("{base}[target]\n{LLAMA}health_timeout = 0\n"),
        10,
        "target.health_timeout",
        "more than 0",
    );
    fails(
        &format!("{base}[target]\n{LLAMA}url = \"http://x\"\n"),
        10,
        "target.url",
        "does not apply",
    );
    fails(
        &format!("{base}[sweep]\nidle_unload = [\"5s\", \"nope\"]\n"),
        7,
        "sweep.idle_unload[1]",
        "",
    );
    fails(
        &format!("{base}[sweep]\nidle_unload = [\"5s\", 5]\n"),
        7,
        "sweep.idle_unload[1]",
        "duplicate idle_unload value",
    );
    fails(
        &format!("{base}[[server]]\nkind = \"ollama\"\n[[server]]\nname = \"ollama\"\n{LLAMA}"),
        9,
        "server[1].name",
        "duplicate server name",
    );
    fails(
        &format!("{base}[[server]]\nkind = \"llama\"\n"),
        7,
        "server[0].kind",
        "unknown server kind",
    );
    fails(
        &format!("{base}[target]\nkind = \"ollama\"\n[[server]]\nkind = \"ollama\"\n"),
        8,
        "server",
        "both [target] and [[server]]",
    );
    fails(
        &format!(
            "{base}[[server]]\nkind = \"ollama\"\n[[server]]\n{LLAMA}[sweep]\nkeep_alive = [\"5s\"]\n"
        ),
        13,
        "sweep.keep_alive",
        "sweep `idle_unload` instead",
    );
}

#[test]
fn servers_sweep_their_own_values_on_the_same_arrivals() {
    let text = format!(
        "{OK_STREAM}{OK_RUN}[[server]]\nkind = \"ollama\"\nidle_unload = [0, \"5s\", \"-1\"]\n[[server]]\nname = \"llama\"\n{LLAMA}idle_unload = [1, 5, \"off\"]\n"
    );
    let s = p(&text).unwrap();
    assert_eq!(s.servers.len(), 2);
    let plan = super::plan(&s);
    let ids: Vec<&str> = plan.cells.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "c01-srv_ollama-iu_0",
            "c02-srv_ollama-iu_5s",
            "c03-srv_ollama-iu_-1",
            "c04-srv_llama-iu_1",
            "c05-srv_llama-iu_5",
            "c06-srv_llama-iu_-1"
        ]
    );
    // Same arrivals everywhere; Ollama gets the keep_alive, llama-server a start flag.
    let seed = plan.cells[0].streams[0].seed;
    assert!(plan.cells.iter().all(|c| c.streams[0].seed == seed));
    assert_eq!(
        plan.cells[1].streams[0]
            .keep_alive
            .as_ref()
            .map(|k| k.written()),
        Some("5s")
    );
    assert_eq!(
        plan.cells[4].streams[0]
            .keep_alive
            .as_ref()
            .map(|k| k.written()),
        Some("5")
    );
    let m = plan.cells[5]
        .server
        .as_ref()
        .unwrap()
        .managed
        .as_ref()
        .unwrap();
    assert!(
        m.values
            .contains(&("sleep_idle_seconds".to_string(), "-1".to_string()))
    );
    assert!(
        m.values
            .iter()
            .any(|(k, v)| k == "model_path" && v.ends_with("m.gguf"))
    );
    assert_eq!(
        plan.cells[3]
            .params
            .labels
            .get("server")
            .map(String::as_str),
        Some("llama")
    );
    assert!(plan.cells[0].server.as_ref().unwrap().managed.is_none());
}
