//! What to send: the op mix, entity ids, event bodies, request paths.
//!
//! Entities are partitioned across connections: entity `e` is written only by
//! connection `e % C`, one request after another, so "the last acknowledged
//! write" of an entity is well defined and `--verify` can check it. Each
//! connection draws its keys from its own partition with the configured
//! distribution (with zipf, the hottest entities are the C partition heads).
//! Reads (`get`) draw from the whole key space.
//!
//! Property values are a pure function of (write sequence, property index,
//! send time), so a write can be re-rendered for verification from a small
//! [`WriteRef`].

use crate::config::{Config, Op, SubscribeTo};
use crate::http;
use crate::rng::{KeySampler, Rng};
pub use crate::template::SENT_US_PROPERTY;
use crate::template::{Fields, Shape, Template};

/// One event of a write request: enough to re-render its properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteRef {
    pub entity: u64,
    /// Per-connection write counter (unique per entity, since one connection
    /// writes each entity).
    pub seq: u64,
    /// Intended send time, Unix µs (0 when not embedded).
    pub sent_us: u64,
}

/// The immutable part of the workload, shared by all connections.
#[derive(Debug)]
pub struct Workload {
    pub entities: u64,
    pub connections: usize,
    streams: usize,
    sources: usize,
    batch: usize,
    template: Template,
    prefix: String,
    namespaces: Vec<String>,
    embed_sent: bool,
    subscribe: SubscribeTo,
    /// Cumulative op weights, indexed like `Op::ALL`.
    mix_cumulative: [u32; 4],
    global_keys: KeySampler,
    dist: crate::rng::KeyDist,
    seed: u64,
    path_event: Vec<u8>,
    path_batch: Vec<u8>,
    path_entity: Vec<u8>,
    path_list: Vec<u8>,
}

impl Workload {
    pub fn new(cfg: &Config) -> Workload {
        let mut acc = 0;
        let mix_cumulative = cfg.mix.map(|w| {
            acc += w;
            acc
        });
        let base = cfg.target.base_path.as_bytes();
        let join = |p: &str| [base, p.as_bytes()].concat();
        let mut path_list = join("/api/state/entities?prefix=");
        let list_prefix = match cfg.namespaces.first() {
            Some(ns) => format!("{ns}/{}", cfg.prefix),
            None => cfg.prefix.clone(),
        };
        http::push_encoded(&mut path_list, list_prefix.as_bytes());
        path_list.extend_from_slice(format!("&limit={}", cfg.list_limit).as_bytes());
        Workload {
            entities: cfg.entities,
            connections: cfg.connections,
            streams: cfg.streams,
            sources: cfg.sources,
            batch: cfg.batch,
            template: Template::new(&Shape {
                props: cfg.props,
                value_size: cfg.value_size,
                streams: cfg.streams,
                prefix: &cfg.prefix,
                namespaces: &cfg.namespaces,
                embed_sent: cfg.embeds_send_time(),
            }),
            prefix: cfg.prefix.clone(),
            namespaces: cfg.namespaces.clone(),
            embed_sent: cfg.embeds_send_time(),
            subscribe: cfg.subscribe.clone(),
            mix_cumulative,
            global_keys: KeySampler::new(cfg.dist, cfg.entities),
            dist: cfg.dist,
            seed: cfg.seed,
            path_event: join("/api/events"),
            path_batch: join("/api/events/batch"),
            path_entity: join("/api/state/entities/"),
            path_list,
        }
    }

    /// Units of load of an op (events carried; 1 for reads).
    pub fn units(&self, op: Op) -> u64 {
        match op {
            Op::Batch => self.batch as u64,
            _ => 1,
        }
    }

    /// `[ns/]<prefix>NNNNNN`.
    pub fn write_id(&self, out: &mut Vec<u8>, entity: u64) {
        self.template.write_id(out, entity);
    }

    pub fn id(&self, entity: u64) -> String {
        let mut v = Vec::new();
        self.write_id(&mut v, entity);
        String::from_utf8(v).expect("ids are ASCII")
    }

    /// The properties object of a write, e.g.
    /// `{"p0":"k3x...","p1":17,"_lt_sent_us":1700000000000000}`: even
    /// properties are strings of `--value-size` bytes, odd ones integers,
    /// both derived from the write's sequence number.
    pub fn write_properties(&self, out: &mut Vec<u8>, w: &WriteRef) {
        let mut num = itoa::Buffer::new();
        let sent = if self.embed_sent {
            num.format(w.sent_us).as_bytes()
        } else {
            b""
        };
        self.template.write_properties(
            out,
            &Fields {
                stream: 0,
                source: 0,
                entity: w.entity,
                seq: w.seq,
                sent,
            },
        );
    }

    /// Whether subscribers (as configured) receive updates of `entity`.
    pub fn subscribed(&self, entity: u64) -> bool {
        match self.subscribe {
            SubscribeTo::All => true,
            SubscribeTo::Prefix => {
                self.namespaces.is_empty() || entity % self.namespaces.len() as u64 == 0
            }
            SubscribeTo::Ids(n) => entity < n.min(self.entities),
            SubscribeTo::Pattern(ref p) => {
                let mut id = Vec::with_capacity(64);
                self.write_id(&mut id, entity);
                id.starts_with(&p.as_bytes()[..p.len() - 1])
            }
        }
    }

    /// The `entity_id` values a subscriber subscribes to.
    pub fn subscriptions(&self) -> Vec<String> {
        match self.subscribe {
            SubscribeTo::All => vec!["*".to_string()],
            SubscribeTo::Prefix => {
                let ns = match self.namespaces.first() {
                    Some(ns) => format!("{ns}/"),
                    None => String::new(),
                };
                vec![format!("{ns}{}*", self.prefix)]
            }
            SubscribeTo::Ids(n) => (0..n.min(self.entities)).map(|e| self.id(e)).collect(),
            SubscribeTo::Pattern(ref p) => vec![p.clone()],
        }
    }

    /// Entities written by connection `conn`.
    pub fn owned_by(&self, conn: usize) -> u64 {
        let c = self.connections as u64;
        (self.entities - conn as u64).div_ceil(c)
    }
}

/// A rendered request, borrowed from the generator's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub op: Op,
    /// Events carried (0 for reads).
    pub events: usize,
}

/// One connection's request generator. Its buffers are reused for every
/// request.
#[derive(Debug)]
pub struct Generator {
    rng: Rng,
    conn: u64,
    conns: u64,
    owned: KeySampler,
    seq: u64,
    next_op: Op,
    /// Length of the last body: the Content-Length to leave room for.
    body_len_guess: usize,
    /// Entity id of a `get`, before percent-encoding.
    id: Vec<u8>,
    path: Vec<u8>,
    /// Events of the last rendered write request.
    pub writes: Vec<WriteRef>,
}

impl Generator {
    pub fn new(w: &Workload, conn: usize) -> Generator {
        let mut rng = Rng::derive(w.seed, conn as u64);
        let next_op = pick_op(&w.mix_cumulative, &mut rng);
        Generator {
            rng,
            conn: conn as u64,
            conns: w.connections as u64,
            owned: KeySampler::new(w.dist, w.owned_by(conn)),
            seq: 0,
            next_op,
            body_len_guess: 0,
            id: Vec::with_capacity(64),
            path: Vec::with_capacity(256),
            writes: Vec::with_capacity(w.batch),
        }
    }

    /// The op of the next request (to know its units before rendering it).
    pub fn peek_op(&self) -> Op {
        self.next_op
    }

    /// Skips the next request (dropped in an open loop).
    pub fn skip(&mut self, w: &Workload) {
        self.next_op = pick_op(&w.mix_cumulative, &mut self.rng);
    }

    /// Renders the next request into `out`; `sent_us` is embedded in events
    /// when subscribers measure latency. Bodies are rendered in place, right
    /// after their head (see [`http::write_post_with`]).
    pub fn render(
        &mut self,
        w: &Workload,
        out: &mut Vec<u8>,
        common: &[u8],
        sent_us: u64,
    ) -> Planned {
        let op = self.next_op;
        self.next_op = pick_op(&w.mix_cumulative, &mut self.rng);
        self.writes.clear();
        let sent_us = if w.embed_sent { sent_us } else { 0 };
        let mut num = itoa::Buffer::new();
        // One send time per request, formatted once for all its events.
        let sent: &[u8] = if w.embed_sent {
            num.format(sent_us).as_bytes()
        } else {
            b""
        };
        match op {
            Op::Ingest => {
                self.body_len_guess =
                    http::write_post_with(out, &w.path_event, common, self.body_len_guess, |out| {
                        self.event(w, out, sent_us, sent)
                    });
            }
            Op::Batch => {
                self.body_len_guess =
                    http::write_post_with(out, &w.path_batch, common, self.body_len_guess, |out| {
                        out.extend_from_slice(b"{\"events\":[");
                        w.template
                            .write_events(out, w.batch, |_| self.next_event(w, sent_us, sent));
                        out.extend_from_slice(b"]}");
                    });
            }
            Op::Get => {
                let e = w.global_keys.sample(&mut self.rng);
                self.id.clear();
                w.write_id(&mut self.id, e);
                self.path.clear();
                self.path.extend_from_slice(&w.path_entity);
                http::push_encoded(&mut self.path, &self.id);
                http::write_get(out, &self.path, common);
            }
            Op::List => http::write_get(out, &w.path_list, common),
        }
        Planned {
            op,
            events: self.writes.len(),
        }
    }

    fn event(&mut self, w: &Workload, out: &mut Vec<u8>, sent_us: u64, sent: &[u8]) {
        let f = self.next_event(w, sent_us, sent);
        w.template.write_event(out, &f);
    }

    /// Draws the next event (and remembers it as a write of this request).
    fn next_event<'s>(&mut self, w: &Workload, sent_us: u64, sent: &'s [u8]) -> Fields<'s> {
        let rank = self.owned.sample(&mut self.rng);
        let entity = rank * self.conns + self.conn;
        debug_assert!(entity < w.entities);
        self.seq += 1;
        // Draw in a fixed order: same seed, same requests.
        let stream = if w.streams > 1 {
            self.rng.below(w.streams as u64)
        } else {
            0
        };
        let source = self.rng.below(w.sources as u64);
        self.writes.push(WriteRef {
            entity,
            seq: self.seq,
            sent_us,
        });
        Fields {
            stream,
            source,
            entity,
            seq: self.seq,
            sent,
        }
    }
}

fn pick_op(cumulative: &[u32; 4], rng: &mut Rng) -> Op {
    let total = cumulative[3];
    let x = rng.below(total as u64) as u32;
    let i = cumulative.iter().position(|&c| x < c).expect("x < total");
    Op::ALL[i]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Args;
    use clap::Parser;

    fn workload(extra: &[&str]) -> Workload {
        let mut v = vec!["lt", "--url", "http://127.0.0.1:3000/base"];
        v.extend_from_slice(extra);
        Workload::new(&Config::from_args(&Args::try_parse_from(v).unwrap()).unwrap())
    }

    fn requests(w: &Workload, conn: usize, n: usize) -> Vec<String> {
        let mut g = Generator::new(w, conn);
        (0..n)
            .map(|i| {
                let mut out = Vec::new();
                g.render(w, &mut out, b"Host: h\r\n", 1_000 + i as u64);
                String::from_utf8(out).unwrap()
            })
            .collect()
    }

    #[test]
    fn event_body_shape() {
        let w = workload(&["--props", "2", "--value-size", "4", "--subscribers", "1"]);
        let reqs = requests(&w, 0, 1);
        let body = reqs[0].split("\r\n\r\n").nth(1).unwrap();
        assert!(reqs[0].starts_with("POST /base/api/events HTTP/1.1\r\nHost: h\r\n"));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["stream"], "loadtest");
        assert!(v["source"].as_str().unwrap().starts_with("lt-"));
        let id = v["payload"]["entity_id"].as_str().unwrap();
        assert!(id.starts_with("lt-") && id.len() == 9, "{id}");
        let props = v["payload"]["properties"].as_object().unwrap();
        assert_eq!(props["p0"].as_str().unwrap().len(), 4);
        assert_eq!(props["p1"], 1);
        assert_eq!(props[SENT_US_PROPERTY], 1000);
        let cl: usize = reqs[0]
            .split("Content-Length: ")
            .nth(1)
            .unwrap()
            .split("\r\n")
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(cl, body.len());
    }

    #[test]
    fn deterministic_with_a_seed() {
        let w = workload(&["--mix", "ingest=5,get=3,list=1", "--seed", "9"]);
        assert_eq!(requests(&w, 2, 200), requests(&w, 2, 200));
        assert_ne!(requests(&w, 2, 50), requests(&w, 3, 50));
        let w2 = workload(&["--mix", "ingest=5,get=3,list=1", "--seed", "10"]);
        assert_ne!(requests(&w, 2, 50), requests(&w2, 2, 50));
    }

    #[test]
    fn mix_proportions() {
        let w = workload(&["--mix", "ingest=90,get=10"]);
        let reqs = requests(&w, 0, 10_000);
        let gets = reqs.iter().filter(|r| r.starts_with("GET ")).count();
        assert!((850..1150).contains(&gets), "gets {gets}");
    }

    #[test]
    fn connections_write_disjoint_entities() {
        let w = workload(&["-c", "3", "--entities", "10", "--batch", "5"]);
        let mut seen = [None; 10];
        for conn in 0..3 {
            let mut g = Generator::new(&w, conn);
            for _ in 0..50 {
                let p = g.render(&w, &mut Vec::new(), b"", 0);
                assert_eq!((p.op, p.events), (Op::Batch, 5));
                for wr in &g.writes {
                    assert_eq!(wr.entity % 3, conn as u64);
                    assert_eq!(*seen[wr.entity as usize].get_or_insert(conn), conn);
                }
            }
        }
        assert!(
            seen.iter().all(|s| s.is_some()),
            "every entity written: {seen:?}"
        );
        assert_eq!((w.owned_by(0), w.owned_by(1), w.owned_by(2)), (4, 3, 3));
    }

    #[test]
    fn ids_namespaces_and_paths() {
        let w = workload(&["--namespace", "a,b", "--mix", "get=1", "--prefix", "x-"]);
        assert_eq!(w.id(7), "b/x-000007");
        assert_eq!(w.id(1_234_567), "b/x-1234567");
        assert_eq!(w.id(8), "a/x-000008");
        let r = &requests(&w, 0, 1)[0];
        assert!(r.starts_with("GET /base/api/state/entities/"), "{r}");
        assert!(r.contains("%2Fx-"), "{r}");
        let w = workload(&[
            "--namespace",
            "a",
            "--mix",
            "list=1",
            "--subscribe",
            "prefix",
        ]);
        let r = &requests(&w, 0, 1)[0];
        assert!(
            r.starts_with("GET /base/api/state/entities?prefix=a%2Flt-&limit=100 "),
            "{r}"
        );
        assert_eq!(w.subscriptions(), vec!["a/lt-*".to_string()]);
    }

    #[test]
    fn subscription_filters() {
        let w = workload(&["--subscribe", "lt-00001*", "--entities", "100"]);
        assert!(w.subscribed(10) && w.subscribed(19) && !w.subscribed(20) && !w.subscribed(1));
        assert_eq!(w.subscriptions(), vec!["lt-00001*".to_string()]);
        let w = workload(&["--subscribe", "ids:3"]);
        assert!(w.subscribed(2) && !w.subscribed(3));
        assert_eq!(w.subscriptions().len(), 3);
        let w = workload(&["--subscribe", "prefix", "--namespace", "a,b"]);
        assert!(w.subscribed(0) && !w.subscribed(1) && w.subscribed(2));
    }

    #[test]
    fn properties_are_a_function_of_the_write() {
        let w = workload(&["--props", "3", "--value-size", "30"]);
        let render = |seq| {
            let mut v = Vec::new();
            w.write_properties(
                &mut v,
                &WriteRef {
                    entity: 1,
                    seq,
                    sent_us: 5,
                },
            );
            String::from_utf8(v).unwrap()
        };
        assert_eq!(render(3), render(3));
        assert_ne!(render(3), render(4));
        let v: serde_json::Value = serde_json::from_str(&render(3)).unwrap();
        assert_eq!(v["p2"].as_str().unwrap().len(), 30);
        assert!(v.get(SENT_US_PROPERTY).is_none());
    }

    /// Not a check: how fast one thread renders batches of 1000 events
    /// (`cargo test --release -p flux-loadtest -- --ignored --nocapture throughput`).
    #[test]
    #[ignore]
    fn render_throughput() {
        let w = workload(&["--batch", "1000", "-c", "8"]);
        let mut g = Generator::new(&w, 0);
        let mut out = Vec::with_capacity(1 << 20);
        let rounds = 2_000;
        let start = std::time::Instant::now();
        let mut bytes = 0;
        for i in 0..rounds {
            out.clear();
            g.render(
                &w,
                &mut out,
                b"Host: 127.0.0.1:3000\r\n",
                1_700_000_000_000_000 + i,
            );
            bytes += out.len();
        }
        let ns = start.elapsed().as_nanos() as f64 / (rounds * 1000) as f64;
        println!(
            "render_throughput: {ns:.1} ns/event, {:.2} M events/s, {} B/event",
            1e3 / ns,
            bytes / (rounds as usize * 1000)
        );
    }
}
