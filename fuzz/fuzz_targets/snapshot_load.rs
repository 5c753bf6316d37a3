//! The snapshot reader (`log::snapshot::decode`, what `snapshot::load` does with the
//! file's bytes), and what the server does with a loaded store: render every entity
//! (reads and listings) and replay log records on top of it (recovery merges the log
//! after the snapshot into these entities).
//!
//! The first byte's low bit appends the correct CRC to the rest, so that the fuzzer
//! reaches the entity decoding behind the checksum; without it the bytes are the file.
//!
//! Checked besides "never panics": a store that loads (from a file of either version),
//! written back with the snapshot writer's own encoder (version 2), loads again to the
//! same entities and header.
#![no_main]

use flux::event::{push_property, Record, KIND_EVENT, KIND_TOMBSTONE};
use flux::log::snapshot::{decode, write_header, EntityWriter};
use flux::state::write_entity_json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut file = rest.to_vec();
    if mode & 1 == 1 {
        let crc = crc32fast::hash(&file);
        file.extend_from_slice(&crc.to_le_bytes());
    }
    let (meta, mut store) = match decode(&file) {
        Ok(loaded) => loaded,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };

    // Written back, it reads back the same.
    let mut again = Vec::new();
    write_header(&mut again, &meta);
    let mut enc = EntityWriter::default();
    for (id, e) in store.range(b"", None) {
        enc.write(&mut again, id, e);
    }
    EntityWriter::finish(&mut again, store.len() as u64);
    let crc = crc32fast::hash(&again);
    again.extend_from_slice(&crc.to_le_bytes());
    let (meta2, store2) = decode(&again).expect("a re-encoded snapshot loads");
    assert_eq!(meta2, meta);
    assert_eq!(store2.len(), store.len());
    for (id, e) in store.range(b"", None) {
        let e2 = store2.get(id).expect("same ids");
        assert_eq!(
            (e2.last_updated_ms, e2.last_lsn, &e2.props),
            (e.last_updated_ms, e.last_lsn, &e.props)
        );
    }

    // Reads render every entity.
    let mut out = Vec::new();
    let ids: Vec<Vec<u8>> = store.range(b"", None).map(|(id, _)| id.to_vec()).collect();
    for id in &ids {
        out.clear();
        write_entity_json(&mut out, id, store.get(id).expect("listed"));
    }

    // Replay merges records into the loaded entities: one that rewrites each entity's
    // first property with a value of another length and adds a new one, then a
    // tombstone for every other entity.
    for (i, id) in ids.iter().enumerate() {
        let mut props = Vec::new();
        let first_key = store
            .get(id)
            .expect("listed")
            .props
            .iter()
            .next()
            .map(|(k, _)| k.to_vec());
        if let Some(k) = first_key {
            push_property(&mut props, &k, b"[1,2,3]");
        }
        push_property(&mut props, b"fuzz-new-key", b"true");
        let record = Record {
            kind: if i % 2 == 0 {
                KIND_EVENT
            } else {
                KIND_TOMBSTONE
            },
            ingest_ms: 1,
            timestamp_ms: 1,
            prev_lsn: 0,
            event_id: b"e",
            stream: b"s",
            source: b"src",
            key: None,
            schema: None,
            entity_id: id,
            properties: &props,
        };
        store.apply(&record, meta.replay_from_lsn);
        if let Some(e) = store.get(id) {
            out.clear();
            write_entity_json(&mut out, id, e);
        }
    }
});
