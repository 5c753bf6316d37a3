//! What a log segment roll-over costs the shard's event loop: the roll as Flux makes it
//! now (the next segment was prepared ahead on the blocking pool: a rename and a seal
//! frame) against the roll as it was made before (fdatasync of the segment being left,
//! then creating the next one: posix_fallocate, header, fsync, link, directory fsync),
//! both on the shard thread. Segments of 1 MiB (the minimum); the disk is the one
//! `TMPDIR` is on. Each sample times one `reserve` that rolls.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use flux::log::scan::RecoveryMode;
use flux::log::{ShardLog, FRAME_EVENTS};

const SEGMENT_BYTES: u64 = 1 << 20;
const PAYLOAD_BYTES: usize = 4000;

/// A log whose active segment is full of dirty (unsynced) frames, so that the next
/// reserve rolls; with a spare ready if `spare`.
fn full_log(dir: &std::path::Path, spare: bool) -> ShardLog {
    let (mut log, _) = ShardLog::open(
        dir,
        (0, 1),
        SEGMENT_BYTES,
        0,
        RecoveryMode::Strict,
        |_, _, _| {},
    )
    .expect("open");
    let payload = vec![7u8; PAYLOAD_BYTES];
    // The first reserve makes segment 0; fill it to the last frame that fits.
    let frame_bytes = flux::log::frame::frame_len(PAYLOAD_BYTES) as u64;
    log.reserve(PAYLOAD_BYTES).expect("reserve");
    log.append(FRAME_EVENTS, &payload);
    while log.write_lsn() + frame_bytes <= SEGMENT_BYTES {
        log.reserve(PAYLOAD_BYTES).expect("reserve");
        log.append(FRAME_EVENTS, &payload);
    }
    if spare {
        let seg = log.spare_job().expect("spare wanted").run().expect("spare");
        assert!(log.install_spare(seg).is_none());
    }
    log
}

fn time_rolls(iters: u64, spare: bool, sync_old_first: bool) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = full_log(dir.path(), spare);
        let before = log.rolls;
        let t = Instant::now();
        if sync_old_first {
            // The old roll-over synced the segment being left before making the next.
            for f in log.sync_targets().files.iter() {
                f.sync_data().expect("sync");
            }
        }
        black_box(log.reserve(PAYLOAD_BYTES).expect("roll"));
        total += t.elapsed();
        assert_eq!(log.rolls, before + 1, "the reserve rolled");
    }
    total
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("log_roll_1MiB");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("into_prepared_spare", |b| {
        b.iter_custom(|iters| time_rolls(iters, true, false))
    });
    g.bench_function("sync_old_then_create_on_the_loop", |b| {
        b.iter_custom(|iters| time_rolls(iters, false, true))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
