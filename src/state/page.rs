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

impl Page {
    /// The page as bytes (cluster mode: one node's page for another node's merge):
    /// `| more u8 | n u32 | ids_len u32 | json_len u32 | n × (id_end u32, json_end u32) | ids | json |`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.more as u8);
        out.extend_from_slice(&(self.items.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.ids.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.json.len() as u32).to_le_bytes());
        for (a, b) in &self.items {
            out.extend_from_slice(&a.to_le_bytes());
            out.extend_from_slice(&b.to_le_bytes());
        }
        out.extend_from_slice(&self.ids);
        out.extend_from_slice(&self.json);
    }

    /// Reads what [`Page::encode`] wrote; `None` unless every offset is in order and
    /// in bounds (the bytes come from the network).
    pub fn decode(b: &[u8]) -> Option<Page> {
        let u32_at = |off: usize| -> Option<u32> {
            b.get(off..off + 4)
                .map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
        };
        let more = match *b.first()? {
            0 => false,
            1 => true,
            _ => return None,
        };
        let n = u32_at(1)? as usize;
        let ids_len = u32_at(5)? as usize;
        let json_len = u32_at(9)? as usize;
        let items_at = 13usize;
        let ids_at = items_at.checked_add(n.checked_mul(8)?)?;
        let json_at = ids_at.checked_add(ids_len)?;
        if b.len() != json_at.checked_add(json_len)? {
            return None;
        }
        let mut items = Vec::with_capacity(n);
        let (mut last_id, mut last_json) = (0u32, 0u32);
        for i in 0..n {
            let a = u32_at(items_at + 8 * i)?;
            let j = u32_at(items_at + 8 * i + 4)?;
            if a < last_id || j < last_json || a as usize > ids_len || j as usize > json_len {
                return None;
            }
            (last_id, last_json) = (a, j);
            items.push((a, j));
        }
        Some(Page {
            ids: b[ids_at..json_at].to_vec(),
            json: b[json_at..].to_vec(),
            items,
            more,
        })
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
    fn pages_travel_as_bytes() {
        let mut s = Store::default();
        for i in 0..10 {
            s.insert(format!("e{i}").as_bytes(), Entity::default());
        }
        let mut p = Page::default();
        s.page(
            &PageQuery {
                prefix: vec![],
                after: None,
                max_entities: 4,
                max_bytes: 1 << 20,
            },
            &mut p,
        );
        let mut b = Vec::new();
        p.encode(&mut b);
        let q = Page::decode(&b).unwrap();
        assert_eq!((q.len(), q.more), (4, true));
        for i in 0..4 {
            assert_eq!(q.item(i), p.item(i));
        }
        for cut in 0..b.len() {
            assert!(Page::decode(&b[..cut]).is_none(), "truncated at {cut}");
        }
        let mut bad = b.clone();
        bad[13] = 200; // the first id would end past the ids
        assert!(Page::decode(&bad).is_none());
    }

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
