//! The cold rule and the run folder's files: rows round-trip, a torn last line is skipped.

use super::*;
use std::io::Write;

#[test]
fn m6_cold_rule_uses_both_facts_and_never_load_duration_above_zero() {
    let t = DEFAULT_COLD_THRESHOLD;
    assert_eq!(
        classify_cold(Some(false), Some(Duration::from_millis(2)), t),
        Some(ColdReason::NotResident)
    );
    assert_eq!(
        classify_cold(Some(true), Some(Duration::from_millis(2500)), t),
        Some(ColdReason::LoadDuration)
    );
    assert_eq!(
        classify_cold(Some(false), Some(Duration::from_secs(3)), t),
        Some(ColdReason::Both)
    );
    assert_eq!(
        classify_cold(Some(true), Some(Duration::from_millis(5)), t),
        None
    );
    assert_eq!(classify_cold(None, Some(Duration::from_nanos(1)), t), None);
}

#[test]
fn rows_round_trip_and_a_torn_last_line_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let meta = RunMeta {
        tool: "kabench".into(),
        ..Default::default()
    };
    let mut w = RunFolder::create(dir.path(), "name = \"x\"\n", meta).unwrap();
    let row = RequestRecord {
        cell: "c0".into(),
        stream: "s".into(),
        model: "m".into(),
        keep_alive: Some(KeepAlive::forever()),
        intended_ms: 1.5,
        sent_ms: Some(1.6),
        end_ms: 20.0,
        status: Some(200),
        cold: true,
        cold_reason: "both".into(),
        load_duration_ms: Some(1500.0),
        ttft_ms: Some(10.0),
        e2e_ms: Some(18.5),
        ..Default::default()
    };
    w.append_request(&row).unwrap();
    w.append_request(&row).unwrap();
    let mut f = OpenOptions::new()
        .append(true)
        .open(dir.path().join(REQUESTS_CSV))
        .unwrap();
    f.write_all(b"c0,3,s,m,-1,false,1.0,").unwrap();
    let rows = read_requests(dir.path()).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0], row);
    let header = fs::read_to_string(dir.path().join(REQUESTS_CSV)).unwrap();
    assert!(header.starts_with(
        "cell,request,stream,model,keep_alive,warmup,intended_ms,sent_ms,first_byte_ms,first_token_ms,first_answer_ms,end_ms,status,error,"
    ));
    assert_eq!(read_meta(dir.path()).unwrap().tool, "kabench");
    assert!(read_vram(dir.path()).unwrap().is_empty());
}

#[test]
fn a_run_folder_is_new_or_empty_and_claimed_by_one_run_only() {
    let tmp = tempfile::tempdir().unwrap();
    // Not a run, not empty: refused, its files untouched.
    let other = tmp.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("index.html"), "mine").unwrap();
    let e = RunFolder::create(&other, "", RunMeta::default())
        .err()
        .unwrap();
    assert!(e.is::<RunFolderNotEmpty>(), "{e}");
    assert_eq!(
        fs::read_to_string(other.join("index.html")).unwrap(),
        "mine"
    );
    assert_eq!(fs::read_dir(&other).unwrap().count(), 1);
    // An empty folder is taken.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    RunFolder::create(&empty, "", RunMeta::default()).unwrap();
    // Eight runs racing for one new folder: exactly one wins, the others are told a
    // run holds it.
    for round in 0..20 {
        let dir = tmp.path().join(format!("race{round}"));
        let wins: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let dir = dir.clone();
                    s.spawn(
                        move || match RunFolder::create(&dir, "", RunMeta::default()) {
                            Ok(_) => true,
                            Err(e) => {
                                assert!(
                                    e.is::<RunFolderExists>() || e.is::<RunFolderNotEmpty>(),
                                    "{e}"
                                );
                                false
                            }
                        },
                    )
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(wins.iter().filter(|w| **w).count(), 1, "round {round}");
    }
}

#[test]
fn garbage_rows_are_skipped_and_noted_with_their_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = RunFolder::create(dir.path(), "", RunMeta::default()).unwrap();
    let row = RequestRecord {
        cell: "c0".into(),
        end_ms: 1.0,
        ..Default::default()
    };
    w.append_request(&row).unwrap();
    let mut f = OpenOptions::new()
        .append(true)
        .open(dir.path().join(REQUESTS_CSV))
        .unwrap();
    f.write_all(b"garbage\n").unwrap();
    w.append_request(&row).unwrap();
    f.write_all(b"c0,x,s,m,,false,not-a-number,\n").unwrap();
    w.append_request(&row).unwrap();
    f.write_all(b"c0,3,s,m,-1,false,1.0,").unwrap();
    let mut notes = Vec::new();
    let rows = read_requests_noting(dir.path(), &mut notes).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(notes.len(), 3, "{notes:?}");
    for (note, line) in notes.iter().zip([3, 5, 7]) {
        assert!(
            note.starts_with(&format!(
                "requests.csv line {line}: a row that does not parse was skipped"
            )),
            "{notes:?}"
        );
    }
}

#[test]
fn a_json_write_that_fails_leaves_no_temp_file_and_the_old_content() {
    let dir = tempfile::tempdir().unwrap();
    // The rename cannot replace a non-empty folder: the write fails, nothing is left.
    let target = dir.path().join("x.json");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("keep"), "old").unwrap();
    assert!(write_json_atomic(&target, &1).is_err());
    assert!(!dir.path().join("x.json.tmp").exists());
    assert_eq!(fs::read_to_string(target.join("keep")).unwrap(), "old");
}

#[test]
fn a_huge_sample_in_vram_csv_is_read_capped() {
    let dir = tempfile::tempdir().unwrap();
    RunFolder::create(dir.path(), "", RunMeta::default()).unwrap();
    let mut w = append_to::<VramSample>(&dir.path().join(VRAM_CSV)).unwrap();
    for t in [10.0, 20.0] {
        for i in 0..1000 {
            let row = VramSample {
                t_ms: t,
                source: "ollama_ps".into(),
                device: "ollama".into(),
                model: format!("m{i}"),
                used_bytes: 1,
                ..Default::default()
            };
            w.append(&row).unwrap();
        }
        w.append(&VramSample {
            t_ms: t,
            source: "ollama_ps".into(),
            device: "ollama".into(),
            used_bytes: 1000,
            ..Default::default()
        })
        .unwrap();
    }
    let mut notes = Vec::new();
    let rows = read_vram_noting(dir.path(), &mut notes).unwrap();
    assert_eq!(rows.len(), 2 * (MAX_MODEL_ROWS_PER_SAMPLE + 1));
    assert_eq!(rows.iter().filter(|r| r.model.is_empty()).count(), 2);
    assert!(notes[0].contains("1872 model rows"), "{notes:?}");
}
