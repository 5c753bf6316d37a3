//! Crash atomicity of batches that span shards: the coordinator dies (failpoint)
//! between logging its intent and the other shards' appends; after a restart the batch
//! is entirely present, and stays so across further restarts.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn batch_cut_by_a_crash_between_shards_is_entirely_present_after_recovery() {
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().to_str().unwrap().to_string();
    let tag = unique();
    let ids: Vec<String> = (0..40).map(|i| format!("txn-{tag}-{i:02}")).collect();
    assert_spans_two_shards(ids.iter().map(String::as_str));
    let events: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| event(id, &format!(r#"{{"i":{i}}}"#)))
        .collect();

    // The coordinator aborts right after its intent: the client gets no answer.
    let mut srv = Server::start_with(&[
        ("FLUX_DATA_DIR", &dir),
        ("FLUX_FAILPOINT", "abort-after-intent"),
    ]);
    let mut conn = srv.connect();
    let body = batch_body(&events);
    conn.send(
        format!(
            "POST /api/events/batch HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert!(
        srv.wait_exit(Duration::from_secs(10)).is_some(),
        "the failpoint must abort the server"
    );
    assert!(
        srv.log().contains("failpoint abort-after-intent"),
        "{}",
        srv.log()
    );

    for round in 0..2 {
        let srv = Server::start_with(&[("FLUX_DATA_DIR", &dir)]);
        let present: Vec<String> = srv.list_ids(&format!("prefix=txn-{tag}-"));
        assert_eq!(
            present, ids,
            "round {round}: the batch must be entirely present"
        );
        for (i, id) in ids.iter().enumerate() {
            let e = srv.entity(id).expect("present").json();
            assert_eq!(e["properties"]["i"], i);
        }
        if round == 0 {
            assert!(
                srv.log().contains("re-applied from their intent"),
                "{}",
                srv.log()
            );
        }
    }
}

#[test]
fn acknowledged_cross_shard_batches_survive_kill_9() {
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().to_str().unwrap().to_string();
    let mut srv = Server::start_with(&[("FLUX_DATA_DIR", &dir)]);
    let tag = unique();
    let mut expected = Vec::new();
    for b in 0..20 {
        let events: Vec<String> = (0..25)
            .map(|i| {
                let id = format!("ack-{tag}-{b:02}-{i:02}");
                expected.push(id.clone());
                event(&id, &format!(r#"{{"b":{b},"i":{i}}}"#))
            })
            .collect();
        srv.batch_ok(&events);
    }
    srv.signal("KILL");
    srv.wait_exit(Duration::from_secs(5)).expect("killed");
    let srv = Server::start_with(&[("FLUX_DATA_DIR", &dir)]);
    expected.sort();
    assert_eq!(srv.list_ids(&format!("prefix=ack-{tag}-")), expected);
}
