//! Request-head parsing and chunked-body decoding, per request head / body byte.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flux::http::chunked::ChunkedDecoder;
use flux::http::parse::parse_head;

/// A single-event ingest request (`POST /api/events`) as a load generator sends it (5 headers, ~200 bytes).
const POST_HEAD: &[u8] = b"POST /api/events HTTP/1.1\r\n\
Host: flux.internal:8080\r\n\
User-Agent: flux-loadtest/0.1\r\n\
Content-Type: application/json\r\n\
Authorization: Bearer 4f1c2a9e7b3d4e5f8a6b\r\n\
Content-Length: 183\r\n\r\n";

/// A point read of one entity (`GET /api/state/entities/:id`).
const GET_HEAD: &[u8] = b"GET /api/state/entities/temp-01 HTTP/1.1\r\n\
Host: flux.internal:8080\r\n\
Accept: application/json\r\n\r\n";

const CHUNKED_DATA_BYTES: usize = 64 * 1024;
const CHUNK_BYTES: usize = 4096;

/// 64 KiB of data in 4 KiB chunks, with the final chunk and no trailers.
fn chunked_body() -> Vec<u8> {
    let mut body = Vec::with_capacity(CHUNKED_DATA_BYTES + 256);
    for _ in 0..CHUNKED_DATA_BYTES / CHUNK_BYTES {
        body.extend_from_slice(format!("{CHUNK_BYTES:x}\r\n").as_bytes());
        body.extend(std::iter::repeat_n(b'x', CHUNK_BYTES));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    body
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("http_parse");
    for (name, head) in [("post_head", POST_HEAD), ("get_head", GET_HEAD)] {
        assert!(matches!(parse_head(head), Ok(Some(_))));
        g.throughput(Throughput::Bytes(head.len() as u64));
        g.bench_function(name, |b| b.iter(|| parse_head(black_box(head))));
    }

    let body = chunked_body();
    let mut out = Vec::with_capacity(CHUNKED_DATA_BYTES);
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("chunked_64k", |b| {
        b.iter(|| {
            out.clear();
            let mut decoder = ChunkedDecoder::new(1 << 20);
            let done = decoder.feed(black_box(&body), &mut out);
            assert_eq!(done, Ok((body.len(), true)));
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
