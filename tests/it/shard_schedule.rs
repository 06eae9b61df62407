//! Property-style check of sharding: for many seeds, arrivals, stream counts, shard
//! counts, split rules and host counts, the shards' slices of every cell add up
//! exactly to the one global schedule: the same intended times, streams and sequence
//! numbers, no send twice, none missing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kabench::run::request::{Planned, Slice, plan_sends, plan_slice};
use kabench::scenario::{self, ShardBy};
use kabench::shard::Shard;

fn scenario_text(seed: u64, streams: usize, arrival: &str, requests: u32) -> String {
    let mut text = format!("name = \"prop\"\nseed = {seed}\n");
    for s in 0..streams {
        text.push_str(&format!(
            "[[stream]]\nname = \"s{s}\"\nmodel = \"qwen2.5:7b-instruct-q4_K_M\"\narrival = {arrival}\n"
        ));
    }
    text.push_str(&format!(
        "[run]\nrequests = {requests}\n[sweep]\nkeep_alive = [\"0\", \"5s\"]\nrate = [\"0.5/s\", \"3/s\"]\n"
    ));
    text
}

type Key = (Duration, usize, u32);

fn key(p: &Planned) -> Key {
    (p.offset, p.stream, p.seq)
}

#[test]
fn shard_slices_add_up_exactly_to_the_global_schedule() {
    let arrivals = [
        "{ kind = \"poisson\", rate = \"1/s\" }",
        "{ kind = \"gamma\", rate = \"2/s\", cv = 3.0 }",
        "{ kind = \"constant\", rate = \"1/s\" }",
        "{ kind = \"onoff\", rate = \"4/s\", on = \"2s\", off = \"5s\" }",
    ];
    let mut checked = 0u64;
    for seed in 0..12u64 {
        let arrival = arrivals[seed as usize % arrivals.len()];
        let streams = 1 + (seed as usize % 3);
        let text = scenario_text(seed * 7919 + 1, streams, arrival, 20 + seed as u32 * 3);
        let sc = scenario::parse(&text, Path::new("prop.toml")).expect("valid scenario");
        let plan = scenario::plan(&sc);
        for cell in &plan.cells {
            let global = plan_sends(cell).unwrap();
            let global_keys: Vec<Key> = global.iter().map(key).collect();
            for by in [ShardBy::Request, ShardBy::Stream, ShardBy::Target] {
                for targets in 1..=3usize {
                    for count in 1..=7u32 {
                        // global position -> how many shards sent it
                        let mut sent: BTreeMap<usize, (u32, Key)> = BTreeMap::new();
                        for index in 0..count {
                            let slice = Slice {
                                shard: Shard { index, count },
                                by,
                            };
                            let part = plan_slice(cell, targets, Some(slice)).unwrap();
                            // A slice keeps the global time order.
                            assert!(part.windows(2).all(|w| w[0].global < w[1].global));
                            for p in &part {
                                let e = sent.entry(p.global).or_insert((0, key(p)));
                                e.0 += 1;
                                assert_eq!(e.1, key(p));
                                assert_eq!(p.target, p.global % targets);
                            }
                        }
                        assert_eq!(
                            sent.len(),
                            global.len(),
                            "seed {seed} {by:?} {count} shards: some sends missing"
                        );
                        for (g, (times, k)) in &sent {
                            assert_eq!(*times, 1, "send {g} sent by {times} shards");
                            assert_eq!(
                                *k, global_keys[*g],
                                "send {g} differs from the global schedule"
                            );
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 1000);
}

#[test]
fn one_shard_is_the_whole_schedule_and_the_unsharded_plan_is_unchanged() {
    let sc = scenario::load(Path::new("scenarios/quickstart.toml")).unwrap();
    let plan = scenario::plan(&sc);
    for cell in &plan.cells {
        let global = plan_sends(cell).unwrap();
        let whole = plan_slice(
            cell,
            1,
            Some(Slice {
                shard: Shard { index: 0, count: 1 },
                by: ShardBy::Request,
            }),
        )
        .unwrap();
        assert_eq!(
            global.iter().map(key).collect::<Vec<_>>(),
            whole.iter().map(key).collect::<Vec<_>>()
        );
        assert_eq!(plan_slice(cell, 1, None).unwrap().len(), global.len());
    }
}
