//! One page of a listing from one shard: rendered entities in id order, with their ids
//! kept beside them so the routing shard can merge pages from all shards by id.

use super::{write_entity_json, Store};

/// What to list. `after` is exclusive.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    pub prefix: Vec<u8>,
    pub after: Option<Vec<u8>>,
    pub max_entities: usize,
    pub max_bytes: usize,
}

/// Entities rendered back to back in `json`; `items[i]` holds the end offsets of the
/// i-th id in `ids` and the i-th object in `json`.
#[derive(Debug, Default)]
pub struct Page {
    pub ids: Vec<u8>,
    pub json: Vec<u8>,
    pub items: Vec<(u32, u32)>,
    /// The shard may hold more matching entities after the last one here.
    pub more: bool,
}

impl Page {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Id and rendered JSON of item `i`.
    pub fn item(&self, i: usize) -> (&[u8], &[u8]) {
        let (id_start, json_start) = if i == 0 { (0, 0) } else { self.items[i - 1] };
        let (id_end, json_end) = self.items[i];
        (
            &self.ids[id_start as usize..id_end as usize],
            &self.json[json_start as usize..json_end as usize],
        )
    }

    pub fn last_id(&self) -> Option<&[u8]> {
        self.len().checked_sub(1).map(|i| self.item(i).0)
    }
}

impl Store {
    /// Fills `page` (cleared first) with up to `q.max_entities` entities, stopping early
    /// once `q.max_bytes` of JSON are rendered.
    pub fn page(&self, q: &PageQuery, page: &mut Page) {
        page.ids.clear();
        page.json.clear();
        page.items.clear();
        page.more = false;
        for (id, e) in self.range(&q.prefix, q.after.as_deref()) {
            if page.items.len() >= q.max_entities || page.json.len() >= q.max_bytes {
                page.more = true;
                break;
            }
            page.ids.extend_from_slice(id);
            write_entity_json(&mut page.json, id, e);
            page.items
                .push((page.ids.len() as u32, page.json.len() as u32));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Entity;

    #[test]
    fn pages_walk_everything_exactly_once() {
        let mut s = Store::default();
        for i in 0..1000 {
            s.insert(format!("e{i:04}").as_bytes(), Entity::default());
        }
        let mut q = PageQuery {
            prefix: b"e0".to_vec(),
            after: None,
            max_entities: 64,
            max_bytes: 1 << 20,
        };
        let mut page = Page::default();
        let mut seen = Vec::new();
        loop {
            s.page(&q, &mut page);
            for i in 0..page.len() {
                let (id, json) = page.item(i);
                let v: serde_json::Value = serde_json::from_slice(json).unwrap();
                assert_eq!(v["id"].as_str().unwrap().as_bytes(), id);
                seen.push(id.to_vec());
            }
            if !page.more {
                break;
            }
            q.after = page.last_id().map(<[u8]>::to_vec);
        }
        assert_eq!(seen.len(), 1000);
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn byte_bound_stops_a_page_early() {
        let mut s = Store::default();
        for i in 0..10 {
            s.insert(format!("e{i}").as_bytes(), Entity::default());
        }
        let q = PageQuery {
            prefix: Vec::new(),
            after: None,
            max_entities: 100,
            max_bytes: 1,
        };
        let mut page = Page::default();
        s.page(&q, &mut page);
        assert_eq!(page.len(), 1);
        assert!(page.more);
    }
}
