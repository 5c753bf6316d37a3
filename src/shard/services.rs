//! The per-shard state of the features above the shard layer (`ws::Hub`,
//! `metrics::Local`, `auth::Local`, …), kept by type so that this layer names none of
//! them: the server builds one `Services` per shard before the shard exists, and each
//! feature finds its own state with [`Services::get`] (a feature module offers a
//! one-line accessor, e.g. `ws::hub(shard)`). The same pattern as `http::Extensions`.
//!
//! A lookup compares the type ids of a handful of entries; it never allocates.

use std::any::{type_name, Any};

/// One shard's feature state, by type. Built before the shard, fixed afterwards.
#[derive(Default)]
pub struct Services {
    items: Vec<Box<dyn Any>>,
}

impl Services {
    /// Adds `value`; a second value of the same type is a programming error.
    pub fn with<T: 'static>(mut self, value: T) -> Self {
        assert!(
            self.find::<T>().is_none(),
            "a shard service of type {} is installed twice",
            type_name::<T>()
        );
        self.items.push(Box::new(value));
        self
    }

    /// The installed value of type `T`. Panics (naming `T`) if the server did not
    /// install one: a wiring error, found by the first request of any test.
    #[inline]
    pub fn get<T: 'static>(&self) -> &T {
        match self.find::<T>() {
            Some(v) => v,
            None => missing::<T>(),
        }
    }

    /// The installed value of type `T`, if any (for services installed only in some
    /// modes, like the cluster's).
    #[inline]
    pub fn find<T: 'static>(&self) -> Option<&T> {
        self.items.iter().find_map(|b| b.downcast_ref::<T>())
    }
}

#[cold]
#[inline(never)]
fn missing<T>() -> ! {
    panic!(
        "no shard service of type {} (the server installs it at start)",
        type_name::<T>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_value_by_type() {
        let s = Services::default().with(7u32).with(String::from("hub"));
        assert_eq!(*s.get::<u32>(), 7);
        assert_eq!(s.get::<String>(), "hub");
    }

    #[test]
    #[should_panic(expected = "no shard service of type u64")]
    fn a_missing_service_names_its_type() {
        Services::default().with(7u32).get::<u64>();
    }

    #[test]
    #[should_panic(expected = "installed twice")]
    fn a_type_is_installed_once() {
        let _ = Services::default().with(1u8).with(2u8);
    }
}
