//! `GET /api/state/entities`: a listing merged from every shard in id order and
//! streamed, so that its memory is bounded by shards × one page whatever its size.

use std::io;

use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;

use crate::http::query::{percent_decode, query_pairs};
use crate::http::respond::{self, Persist};
use crate::limits::{LIST_PAGE_BYTES, LIST_PAGE_ENTITIES, WRITE_FLUSH_BYTES};
use crate::shard::{Shard, ShardId};
use crate::state::{Page, PageQuery};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Effective id prefix (`prefix` and `namespace/` combined).
    pub prefix: Vec<u8>,
    /// Only ids strictly greater than this.
    pub after: Option<Vec<u8>>,
    pub limit: Option<usize>,
    /// `prefix` and `namespace` contradict each other: the answer is `[]`.
    pub empty: bool,
}

impl ListQuery {
    pub fn parse(query: Option<&[u8]>) -> Result<Self, &'static str> {
        let mut q = ListQuery::default();
        let mut prefix: Option<Vec<u8>> = None;
        let mut namespace: Option<Vec<u8>> = None;
        let mut key = Vec::new();
        for (k, v) in query_pairs(query.unwrap_or(b"")) {
            let mut val = Vec::new();
            let bad = |_| "invalid percent-encoding in the query";
            percent_decode(k, true, &mut key).map_err(bad)?;
            percent_decode(v, true, &mut val).map_err(bad)?;
            match &key[..] {
                b"prefix" => prefix = Some(val),
                b"namespace" => namespace = Some(val),
                b"after" => q.after = Some(val),
                b"limit" => {
                    let s = std::str::from_utf8(&val).map_err(|_| "limit must be an integer")?;
                    q.limit = Some(
                        s.parse()
                            .map_err(|_| "limit must be a non-negative integer")?,
                    );
                }
                _ => {}
            }
        }
        let prefix = prefix.unwrap_or_default();
        match namespace {
            None => q.prefix = prefix,
            Some(mut ns) => {
                ns.push(b'/');
                if prefix.starts_with(&ns) {
                    q.prefix = prefix;
                } else if ns.starts_with(&prefix) {
                    q.prefix = ns;
                } else {
                    q.empty = true;
                }
            }
        }
        Ok(q)
    }
}

impl ListQuery {
    /// Confines the listing to ids starting with `scope` (a namespace token's
    /// `name/`): the effective prefix is the longer of the two when one extends the
    /// other; otherwise nothing matches.
    pub fn restrict(&mut self, scope: &[u8]) {
        if self.prefix.starts_with(scope) {
            return;
        }
        if scope.starts_with(&self.prefix) {
            self.prefix = scope.to_vec();
        } else {
            self.empty = true;
        }
    }
}

/// Where a merge cursor's pages come from.
enum Source {
    Shard(ShardId),
    /// Another cluster node (its own groups only: `/api/internal/page`).
    Node(std::sync::Arc<str>),
}

/// One source's position in the merge.
struct Cursor {
    source: Source,
    page: Page,
    pos: usize,
}

impl Cursor {
    fn current(&self) -> Option<&[u8]> {
        (self.pos < self.page.len()).then(|| self.page.item(self.pos).0)
    }
}

fn page_query(q: &ListQuery, after: Option<Vec<u8>>, remaining: usize) -> PageQuery {
    PageQuery {
        prefix: q.prefix.clone(),
        after,
        max_entities: remaining.clamp(1, LIST_PAGE_ENTITIES),
        max_bytes: LIST_PAGE_BYTES,
    }
}

async fn fetch(
    shard: &Shard,
    source: &Source,
    query: PageQuery,
    page: &mut Page,
) -> io::Result<()> {
    match source {
        Source::Shard(s) => shard
            .page(*s, query, page)
            .await
            .map_err(|_| io::Error::other("a shard is unavailable")),
        Source::Node(url) => {
            *page = crate::api::cluster::remote_page(shard, url, &query)
                .await
                .map_err(io::Error::other)?;
            Ok(())
        }
    }
}

/// The sources of a listing: this node's shards, and in cluster mode every other node
/// that serves a group (unless the request came from a node: then this node's alone).
fn sources(shard: &Shard, forwarded: bool) -> Result<Vec<Source>, String> {
    let mut out: Vec<Source> = (0..shard.count)
        .map(|i| Source::Shard(ShardId(i as u16)))
        .collect();
    if !forwarded {
        for url in crate::api::cluster::other_nodes(shard)? {
            out.push(Source::Node(url));
        }
    }
    Ok(out)
}

/// Checks, before the answer starts, that every group has a node serving it (cluster
/// mode): a listing that would silently miss a group is refused with 503 instead.
pub fn check_sources(shard: &Shard, forwarded: bool) -> Result<(), String> {
    sources(shard, forwarded).map(|_| ())
}

/// Up to `max` entities of this node's shards after `after`, merged (cluster mode:
/// the page another node asked for). `more`: this node may hold more after the last.
pub async fn local_page(shard: &Shard, query: PageQuery) -> io::Result<Page> {
    let max = query.max_entities.clamp(1, LIST_PAGE_ENTITIES);
    let mut cursors = Vec::with_capacity(shard.count);
    for i in 0..shard.count {
        let mut c = Cursor {
            source: Source::Shard(ShardId(i as u16)),
            page: Page::default(),
            pos: 0,
        };
        fetch(shard, &c.source, query.clone(), &mut c.page).await?;
        cursors.push(c);
    }
    let mut out = Page::default();
    while out.len() < max && out.json.len() < LIST_PAGE_BYTES {
        let Some(b) = smallest(&cursors) else { break };
        let c = &mut cursors[b];
        let (id, json) = c.page.item(c.pos);
        out.ids.extend_from_slice(id);
        out.json.extend_from_slice(json);
        out.items
            .push((out.ids.len() as u32, out.json.len() as u32));
        c.pos += 1;
        if c.pos == c.page.len() && c.page.more {
            // This shard's next ids are not fetched: stop at the last one given.
            out.more = true;
            return Ok(out);
        }
    }
    out.more = cursors.iter().any(|c| c.pos < c.page.len() || c.page.more);
    Ok(out)
}

/// The cursor with the smallest current id.
fn smallest(cursors: &[Cursor]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, c) in cursors.iter().enumerate() {
        if let Some(id) = c.current() {
            if best.is_none_or(|b| id < cursors[b].current().unwrap_or_default()) {
                best = Some(i);
            }
        }
    }
    best
}

/// Writes the whole listing to `stream`, flushing every `WRITE_FLUSH_BYTES`.
#[allow(clippy::too_many_arguments)]
pub async fn stream(
    shard: &Shard,
    q: ListQuery,
    persist: Persist,
    http10: bool,
    forwarded: bool,
    out: &mut Vec<u8>,
    stream: &mut TcpStream,
) -> io::Result<()> {
    let chunked = !http10;
    let mut remaining = q.limit.unwrap_or(usize::MAX);
    let mut cursors = Vec::new();
    if !q.empty && remaining > 0 {
        for source in sources(shard, forwarded).map_err(io::Error::other)? {
            let mut c = Cursor {
                source,
                page: Page::default(),
                pos: 0,
            };
            fetch(
                shard,
                &c.source,
                page_query(&q, q.after.clone(), remaining),
                &mut c.page,
            )
            .await?;
            cursors.push(c);
        }
    }
    respond::stream_head(out, persist, http10);
    // Entities go from the sources' pages straight into chunks of `out`.
    let mut chunk = respond::begin_chunk(out, chunked);
    out.push(b'[');
    let mut first = true;
    // The last id written: while a group moves between nodes, both may list one of
    // its entities for a moment; it is written once.
    let mut last: Vec<u8> = Vec::new();
    while remaining > 0 {
        // Shards (and nodes) own disjoint ids, so the smallest current id is unique
        // but for the moment a group moves.
        let Some(b) = smallest(&cursors) else { break };
        let c = &mut cursors[b];
        let (id, json) = c.page.item(c.pos);
        if first || id != &last[..] {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(json);
            last.clear();
            last.extend_from_slice(id);
            remaining -= 1;
        }
        c.pos += 1;
        if c.pos == c.page.len() && c.page.more && remaining > 0 {
            let after = c.page.last_id().map(<[u8]>::to_vec);
            let mut page = Page::default();
            fetch(
                shard,
                &c.source,
                page_query(&q, after, remaining),
                &mut page,
            )
            .await?;
            c.page = page;
            c.pos = 0;
        }
        if out.len() - chunk >= WRITE_FLUSH_BYTES {
            respond::end_chunk(out, chunk, chunked);
            stream.write_all(out).await?;
            out.clear();
            chunk = respond::begin_chunk(out, chunked);
        }
    }
    out.push(b']');
    respond::end_chunk(out, chunk, chunked);
    respond::last_chunk(out, chunked);
    stream.write_all(out).await?;
    out.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restrict_to_a_namespace() {
        let restricted = |query: &[u8]| {
            let mut q = ListQuery::parse(Some(query)).unwrap();
            q.restrict(b"alpha/");
            (String::from_utf8(q.prefix).unwrap(), q.empty)
        };
        assert_eq!(restricted(b""), ("alpha/".into(), false));
        assert_eq!(restricted(b"prefix=al"), ("alpha/".into(), false));
        assert_eq!(restricted(b"prefix=alpha/x"), ("alpha/x".into(), false));
        assert_eq!(restricted(b"namespace=alpha"), ("alpha/".into(), false));
        assert!(restricted(b"namespace=bravo").1);
        assert!(restricted(b"prefix=b").1);
        assert!(restricted(b"prefix=alphabet").1);
    }

    #[test]
    fn parse_query() {
        let q = ListQuery::parse(Some(b"prefix=host-&limit=10&after=host-3")).unwrap();
        assert_eq!(q.prefix, b"host-");
        assert_eq!(q.limit, Some(10));
        assert_eq!(q.after.as_deref(), Some(&b"host-3"[..]));
        assert_eq!(ListQuery::parse(None).unwrap(), ListQuery::default());
        assert!(ListQuery::parse(Some(b"limit=-1")).is_err());
        assert!(ListQuery::parse(Some(b"limit=x")).is_err());
        assert_eq!(
            ListQuery::parse(Some(b"prefix=a%2Fb+c")).unwrap().prefix,
            b"a/b c"
        );
        assert_eq!(ListQuery::parse(Some(b"%70refix=x")).unwrap().prefix, b"x");
    }

    #[test]
    fn namespace_combines_with_prefix() {
        assert_eq!(
            ListQuery::parse(Some(b"namespace=ns")).unwrap().prefix,
            b"ns/"
        );
        assert_eq!(
            ListQuery::parse(Some(b"namespace=ns&prefix=ns/x"))
                .unwrap()
                .prefix,
            b"ns/x"
        );
        assert_eq!(
            ListQuery::parse(Some(b"namespace=ns&prefix=n"))
                .unwrap()
                .prefix,
            b"ns/"
        );
        assert!(
            ListQuery::parse(Some(b"namespace=ns&prefix=other"))
                .unwrap()
                .empty
        );
    }
}
