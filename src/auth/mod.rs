//! Auth mode (`FLUX_AUTH_ENABLED=true`): namespaces, bearer tokens, per-namespace
//! rate limits.
//!
//! - `token`: generation (OS random), SHA-256 hashes, constant-time comparison,
//!   `Authorization: Bearer` parsing.
//! - `registry`: the namespaces (shared by all shards, persisted atomically).
//! - `rate`: the per-namespace bucket shared by all shards, spent through leases.
//!
//! Every request is checked on the shard that accepted it, before any work is sent
//! to another shard: `Local::resolve` turns the `Authorization` header into a
//! [`Principal`] (one SHA-256 and one hash-map lookup in the shard's own copy of the
//! registry, refreshed only when the registry's version moved), and the handlers ask
//! it for a [`WriteScope`] or [`ReadScope`]. With auth off the principal is `Open` and
//! every check is a no-op.

pub mod rate;
pub mod registry;
pub mod token;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashMap;

use crate::config::Config;
use rate::Refused;
use registry::{Namespace, Registry};
use token::TokenHash;

/// Shared by all shards (in `Shared`).
pub struct Auth {
    pub enabled: bool,
    pub public_reads: bool,
    admin_hash: Option<TokenHash>,
    pub registry: Registry,
    /// Time origin of the rate-limit buckets.
    epoch: Instant,
}

impl Auth {
    /// Loads the registry from the data directory (auth mode only; otherwise empty).
    pub fn open(cfg: &Config) -> Result<Auth, String> {
        // With auth off no namespace exists and the file is never touched.
        let registry = if cfg.auth_enabled {
            Registry::open(&cfg.data_dir)?
        } else {
            Registry::empty(&cfg.data_dir)
        };
        Ok(Auth {
            enabled: cfg.auth_enabled,
            public_reads: cfg.public_reads,
            admin_hash: cfg
                .admin_token
                .as_ref()
                .filter(|_| cfg.auth_enabled)
                .map(|t| token::hash(t.0.as_bytes())),
            registry,
            epoch: Instant::now(),
        })
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

/// One shard's view of a namespace.
pub struct LocalNs {
    pub ns: Arc<Namespace>,
    /// `name/`: the prefix of the namespace's entity ids.
    pub prefix: Box<[u8]>,
    /// Rate-limit tokens this shard has leased and not spent.
    lease: Cell<u64>,
    /// The runtime-limits version the lease was taken under.
    lease_version: Cell<u64>,
}

impl LocalNs {
    pub fn name(&self) -> &str {
        &self.ns.name
    }

    /// Whether `id` is `name/…` with a non-empty rest.
    #[inline]
    pub fn owns(&self, id: &[u8]) -> bool {
        id.len() > self.prefix.len() && id.starts_with(&self.prefix)
    }
}

/// Who sent a request.
#[derive(Clone)]
pub enum Principal {
    /// Auth mode is off: everything is allowed.
    Open,
    /// No `Authorization` header (or no `?token=` on a WebSocket upgrade).
    Anonymous,
    /// A malformed header, another scheme, or a token nobody holds.
    Invalid,
    Admin,
    Tenant(Rc<LocalNs>),
}

/// A connection's last resolved `Authorization` header (see `Local::resolve_cached`).
pub struct Cached {
    header: Box<[u8]>,
    version: u64,
    principal: Principal,
}

/// Which writes a principal may make.
pub enum WriteScope {
    /// Auth off: any entity id.
    Any,
    /// The admin token: any id of a registered namespace.
    Registered,
    /// A namespace token: ids of that namespace only.
    Own(Rc<LocalNs>),
}

/// Which entities a principal may read (and subscribe to).
#[derive(Clone)]
pub enum ReadScope {
    All,
    Own(Rc<LocalNs>),
}

impl ReadScope {
    /// The id prefix reads are confined to, if any.
    pub fn prefix(&self) -> Option<&[u8]> {
        match self {
            ReadScope::All => None,
            ReadScope::Own(ns) => Some(&ns.prefix),
        }
    }

    pub fn allows(&self, id: &[u8]) -> bool {
        match self {
            ReadScope::All => true,
            ReadScope::Own(ns) => ns.owns(id),
        }
    }
}

/// A refusal: status and message (401 answers carry `WWW-Authenticate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied(pub u16, pub &'static str);

/// The header line of every 401 (RFC 6750 §3).
pub const WWW_AUTHENTICATE: &[u8] = b"WWW-Authenticate: Bearer realm=\"flux\"\r\n";

pub const NO_TOKEN: Denied = Denied(
    401,
    "this request needs Authorization: Bearer <token> (a namespace or the admin token)",
);
pub const BAD_TOKEN: Denied = Denied(401, "the bearer token is malformed or unknown");

impl Principal {
    fn unauthenticated(&self) -> Option<Denied> {
        match self {
            Principal::Anonymous => Some(NO_TOKEN),
            Principal::Invalid => Some(BAD_TOKEN),
            _ => None,
        }
    }

    pub fn write_scope(&self) -> Result<WriteScope, Denied> {
        match self {
            Principal::Open => Ok(WriteScope::Any),
            Principal::Admin => Ok(WriteScope::Registered),
            Principal::Tenant(ns) => Ok(WriteScope::Own(ns.clone())),
            p => Err(p.unauthenticated().expect("unauthenticated")),
        }
    }

    pub fn read_scope(&self, public_reads: bool) -> Result<ReadScope, Denied> {
        match self {
            Principal::Open | Principal::Admin => Ok(ReadScope::All),
            _ if public_reads => Ok(ReadScope::All),
            Principal::Tenant(ns) => Ok(ReadScope::Own(ns.clone())),
            p => Err(p.unauthenticated().expect("unauthenticated")),
        }
    }

    /// Admin endpoints (`/api/admin/config`, registering and deleting namespaces).
    /// With auth off they are open like everything else.
    pub fn admin(&self) -> Result<(), Denied> {
        match self {
            Principal::Open | Principal::Admin => Ok(()),
            Principal::Tenant(_) => Err(Denied(403, "this needs the admin token")),
            p => Err(p.unauthenticated().expect("unauthenticated")),
        }
    }
}

/// How a written entity id fares against a write scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdVerdict {
    Ok,
    /// 400: not `namespace/rest`, or the namespace is not registered.
    Invalid(&'static str),
    /// 403: another namespace's id under a namespace token.
    Forbidden,
}

pub const NOT_NAMESPACED: &str =
    "in auth mode an entity id must be namespace/rest with a registered namespace";
pub const NOT_REGISTERED: &str = "the entity id's namespace is not registered";
pub const FORBIDDEN_WRITE: &str = "this token may write only to its own namespace";

/// Events of one request per namespace, for the rate limit.
#[derive(Default)]
pub struct Tally {
    entries: Vec<(Rc<LocalNs>, u64)>,
    /// Index by namespace once there are many (admin batches over many namespaces).
    index: Option<HashMap<*const LocalNs, usize>>,
}

impl Tally {
    const LINEAR_MAX: usize = 8;

    pub fn add(&mut self, ns: &Rc<LocalNs>, n: u64) {
        let key = Rc::as_ptr(ns);
        let found = match &self.index {
            Some(map) => map.get(&key).copied(),
            None => self.entries.iter().position(|(e, _)| Rc::as_ptr(e) == key),
        };
        match found {
            Some(i) => self.entries[i].1 += n,
            None => {
                self.entries.push((ns.clone(), n));
                if let Some(map) = &mut self.index {
                    map.insert(key, self.entries.len() - 1);
                } else if self.entries.len() > Self::LINEAR_MAX {
                    let map = self
                        .entries
                        .iter()
                        .enumerate()
                        .map(|(i, (e, _))| (Rc::as_ptr(e), i))
                        .collect();
                    self.index = Some(map);
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Events counted for `ns`.
    pub fn count(&self, ns: &Rc<LocalNs>) -> u64 {
        self.entries
            .iter()
            .find(|(e, _)| Rc::ptr_eq(e, ns))
            .map_or(0, |(_, n)| *n)
    }
}

/// This shard's copy of the registry (installed in its `shard::Services`).
#[inline]
pub fn local(shard: &crate::shard::Shard) -> &Local {
    shard.services.get()
}

/// One shard's copy of the registry, refreshed when the registry's version moves.
pub struct Local {
    auth: Arc<Auth>,
    version: Cell<u64>,
    by_hash: RefCell<HashMap<TokenHash, Rc<LocalNs>>>,
    by_name: RefCell<HashMap<Box<[u8]>, Rc<LocalNs>>>,
}

impl Local {
    pub fn new(auth: Arc<Auth>) -> Self {
        Local {
            auth,
            version: Cell::new(0),
            by_hash: RefCell::default(),
            by_name: RefCell::default(),
        }
    }

    pub fn shared(&self) -> &Arc<Auth> {
        &self.auth
    }

    #[inline]
    pub fn enabled(&self) -> bool {
        self.auth.enabled
    }

    /// Rebuilds the copy if the registry changed, keeping the leases of namespaces
    /// that are still there.
    #[inline]
    fn refresh(&self) {
        if self.auth.registry.version() != self.version.get() {
            self.rebuild();
        }
    }

    #[cold]
    fn rebuild(&self) {
        let (version, all) = self.auth.registry.snapshot();
        let old = std::mem::take(&mut *self.by_name.borrow_mut());
        let mut by_hash = HashMap::with_capacity(all.len());
        let mut by_name = HashMap::with_capacity(all.len());
        for ns in all {
            if ns.deleting.load(std::sync::atomic::Ordering::Acquire) {
                continue;
            }
            let mut prefix = ns.name.as_bytes().to_vec();
            prefix.push(b'/');
            let local = match old.get(&prefix[..prefix.len() - 1]) {
                Some(l) if Arc::ptr_eq(&l.ns, &ns) => l.clone(),
                _ => Rc::new(LocalNs {
                    ns: ns.clone(),
                    prefix: prefix.into(),
                    lease: Cell::new(0),
                    lease_version: Cell::new(0),
                }),
            };
            by_hash.insert(ns.token_hash, local.clone());
            by_name.insert(ns.name.as_bytes().into(), local);
        }
        *self.by_hash.borrow_mut() = by_hash;
        *self.by_name.borrow_mut() = by_name;
        self.version.set(version);
    }

    /// The principal behind an `Authorization` header value (or a WebSocket
    /// `?token=` value, given as `raw_token`).
    pub fn resolve(&self, authorization: Option<&[u8]>, raw_token: Option<&[u8]>) -> Principal {
        if !self.auth.enabled {
            return Principal::Open;
        }
        let token = match (authorization, raw_token) {
            (Some(h), _) => match token::bearer(h) {
                Some(t) => t,
                None => return Principal::Invalid,
            },
            (None, Some(t)) if !t.is_empty() => t,
            _ => return Principal::Anonymous,
        };
        let h = token::hash(token);
        if let Some(admin) = &self.auth.admin_hash {
            if token::same(&h, admin) {
                return Principal::Admin;
            }
        }
        self.refresh();
        match self.by_hash.borrow().get(&h) {
            // The map found it by hash; compare the stored hash in constant time
            // anyway, so that equality is never decided by a short-circuiting compare.
            Some(ns) if token::same(&ns.ns.token_hash, &h) => Principal::Tenant(ns.clone()),
            _ => Principal::Invalid,
        }
    }

    /// `resolve` for an `Authorization` header, remembering the answer in the
    /// connection's `cache` until the registry changes: a keep-alive client sending
    /// the same header again costs a byte comparison instead of a SHA-256. The cache
    /// holds only what this connection itself sent, so comparing with it (in variable
    /// time) reveals nothing about anyone else's token.
    #[inline]
    pub fn resolve_cached(&self, cache: &mut Option<Cached>, header: Option<&[u8]>) -> Principal {
        if !self.auth.enabled {
            return Principal::Open;
        }
        let Some(header) = header else {
            return Principal::Anonymous;
        };
        let version = self.auth.registry.version();
        if let Some(c) = cache {
            if c.version == version && c.header[..] == *header {
                return c.principal.clone();
            }
        }
        let principal = self.resolve(Some(header), None);
        *cache = Some(Cached {
            header: header.into(),
            version,
            principal: principal.clone(),
        });
        principal
    }

    /// A registered namespace by name.
    pub fn namespace(&self, name: &[u8]) -> Option<Rc<LocalNs>> {
        self.refresh();
        self.by_name.borrow().get(name).cloned()
    }

    /// The namespace an entity id belongs to (`name/rest`), if registered.
    pub fn namespace_of(&self, id: &[u8]) -> Option<Rc<LocalNs>> {
        let slash = id.iter().position(|&b| b == b'/')?;
        if slash + 1 == id.len() {
            return None;
        }
        self.namespace(&id[..slash])
    }

    /// Checks one written id against a scope. `Ok(Some(ns))` names the namespace
    /// to charge when the scope does not already (the admin token's writes).
    #[inline]
    pub fn check_write(
        &self,
        scope: &WriteScope,
        id: &[u8],
    ) -> Result<Option<Rc<LocalNs>>, IdVerdict> {
        match scope {
            WriteScope::Any => Ok(None),
            WriteScope::Own(ns) => {
                if ns.owns(id) {
                    Ok(None)
                } else if id.contains(&b'/') {
                    Err(IdVerdict::Forbidden)
                } else {
                    Err(IdVerdict::Invalid(NOT_NAMESPACED))
                }
            }
            WriteScope::Registered => match id.iter().position(|&b| b == b'/') {
                None => Err(IdVerdict::Invalid(NOT_NAMESPACED)),
                Some(_) => match self.namespace_of(id) {
                    Some(ns) => Ok(Some(ns)),
                    None => Err(IdVerdict::Invalid(NOT_REGISTERED)),
                },
            },
        }
    }

    /// Spends a request's events, per namespace, all or nothing: on a refusal the
    /// namespaces already charged get their tokens back. Returns the refused
    /// namespace's name with the reason.
    pub fn spend_all(
        &self,
        limits: &crate::runtime::RuntimeLimits,
        shards: usize,
        tally: &Tally,
    ) -> Result<(), (Refused, Rc<LocalNs>)> {
        if limits.rate_limit().is_none() {
            return Ok(());
        }
        for (i, (ns, n)) in tally.entries.iter().enumerate() {
            if let Err(r) = self.spend(limits, shards, ns, *n) {
                for (ns, n) in &tally.entries[..i] {
                    self.refund(limits, shards, ns, *n);
                }
                return Err((r, ns.clone()));
            }
        }
        Ok(())
    }

    /// Spends `n` events of `ns`'s rate limit (if rate limiting is on), leasing from
    /// the shared bucket when this shard's lease runs out.
    pub fn spend(
        &self,
        limits: &crate::runtime::RuntimeLimits,
        shards: usize,
        ns: &LocalNs,
        n: u64,
    ) -> Result<(), Refused> {
        let Some(per_minute) = limits.rate_limit() else {
            return Ok(());
        };
        let version = limits.version();
        if ns.lease_version.get() != version {
            ns.lease.set(0);
            ns.lease_version.set(version);
        }
        let have = ns.lease.get();
        if have >= n {
            ns.lease.set(have - n);
            return Ok(());
        }
        let need = n - have;
        let chunk = rate::lease_size(per_minute, shards);
        let now = self.auth.now_ns();
        if ns.ns.bucket.take(need + chunk, per_minute, now).is_ok() {
            ns.lease.set(chunk);
            return Ok(());
        }
        ns.ns.bucket.take(need, per_minute, now)?;
        ns.lease.set(0);
        Ok(())
    }

    /// Gives back tokens spent by a request that was refused after all: into this
    /// shard's lease up to one lease, the rest to the shared bucket (so no shard
    /// hoards more than a lease that other shards may need).
    pub fn refund(
        &self,
        limits: &crate::runtime::RuntimeLimits,
        shards: usize,
        ns: &LocalNs,
        n: u64,
    ) {
        let Some(per_minute) = limits.rate_limit() else {
            return;
        };
        if ns.lease_version.get() != limits.version() {
            // The limits changed in between: the old lease is void anyway.
            return;
        }
        let chunk = rate::lease_size(per_minute, shards);
        let total = ns.lease.get() + n;
        let keep = total.min(chunk);
        ns.lease.set(keep);
        if total > keep {
            ns.ns.bucket.give_back(total - keep, per_minute);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn setup(rate: &str) -> (tempfile::TempDir, Arc<Auth>, crate::runtime::RuntimeLimits) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::try_parse_from([
            "flux",
            "--auth-enabled",
            "true",
            "--admin-token",
            &"A".repeat(40),
            "--rate-limit-per-minute",
            rate,
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .unwrap();
        let auth = Arc::new(Auth::open(&cfg).unwrap());
        let limits = crate::runtime::RuntimeLimits::new(&cfg);
        (dir, auth, limits)
    }

    #[test]
    fn principals() {
        let (_d, auth, _) = setup("100");
        let (_, tok) = auth.registry.register("alpha", "id".into(), 1).unwrap();
        let local = Local::new(auth.clone());
        let bearer = |t: &str| format!("Bearer {t}").into_bytes();
        assert!(matches!(local.resolve(None, None), Principal::Anonymous));
        assert!(matches!(
            local.resolve(Some(&bearer(&"A".repeat(40))), None),
            Principal::Admin
        ));
        match local.resolve(Some(&bearer(&tok)), None) {
            Principal::Tenant(ns) => assert_eq!(ns.name(), "alpha"),
            _ => panic!("the namespace token must resolve to its namespace"),
        }
        match local.resolve(None, Some(tok.as_bytes())) {
            Principal::Tenant(ns) => assert_eq!(ns.name(), "alpha"),
            _ => panic!("?token= must resolve too"),
        }
        assert!(matches!(
            local.resolve(Some(&bearer("flux_unknown")), None),
            Principal::Invalid
        ));
        assert!(matches!(
            local.resolve(Some(b"Basic abc"), None),
            Principal::Invalid
        ));
        // A header wins over ?token=, even when it is malformed.
        assert!(matches!(
            local.resolve(Some(b"Bearer"), Some(tok.as_bytes())),
            Principal::Invalid
        ));
        // The per-connection cache answers like resolve, and forgets on a change.
        let mut cache = None;
        let h = bearer(&tok);
        assert!(matches!(
            local.resolve_cached(&mut cache, Some(&h)),
            Principal::Tenant(_)
        ));
        assert!(matches!(
            local.resolve_cached(&mut cache, Some(&h)),
            Principal::Tenant(_)
        ));
        assert!(matches!(
            local.resolve_cached(&mut cache, Some(b"Bearer flux_x")),
            Principal::Invalid
        ));
        assert!(matches!(
            local.resolve_cached(&mut cache, None),
            Principal::Anonymous
        ));
        assert!(matches!(
            local.resolve_cached(&mut cache, Some(&h)),
            Principal::Tenant(_)
        ));
        // A namespace being deleted stops resolving at once (cached or not).
        assert!(auth.registry.begin_delete("alpha"));
        assert!(matches!(
            local.resolve(Some(&bearer(&tok)), None),
            Principal::Invalid
        ));
        assert!(matches!(
            local.resolve_cached(&mut cache, Some(&h)),
            Principal::Invalid
        ));
    }

    #[test]
    fn write_checks() {
        let (_d, auth, _) = setup("100");
        auth.registry.register("alpha", "id".into(), 1).unwrap();
        auth.registry.register("bravo", "id2".into(), 1).unwrap();
        let local = Local::new(auth);
        let alpha = WriteScope::Own(local.namespace(b"alpha").unwrap());
        let verdict = |scope, id: &[u8]| {
            local
                .check_write(scope, id)
                .map(|ns| ns.map(|n| n.name().to_string()))
        };
        assert_eq!(verdict(&alpha, b"alpha/x"), Ok(None));
        assert_eq!(verdict(&alpha, b"bravo/x"), Err(IdVerdict::Forbidden));
        assert_eq!(verdict(&alpha, b"zulu/x"), Err(IdVerdict::Forbidden));
        assert_eq!(verdict(&alpha, b"alpha/"), Err(IdVerdict::Forbidden));
        assert_eq!(
            verdict(&alpha, b"plain"),
            Err(IdVerdict::Invalid(NOT_NAMESPACED))
        );
        let admin = WriteScope::Registered;
        assert_eq!(verdict(&admin, b"bravo/x"), Ok(Some("bravo".to_string())));
        assert_eq!(
            verdict(&admin, b"zulu/x"),
            Err(IdVerdict::Invalid(NOT_REGISTERED))
        );
        assert_eq!(
            verdict(&admin, b"bravo/"),
            Err(IdVerdict::Invalid(NOT_REGISTERED))
        );
        assert_eq!(
            verdict(&admin, b"plain"),
            Err(IdVerdict::Invalid(NOT_NAMESPACED))
        );
        assert_eq!(verdict(&WriteScope::Any, b"plain"), Ok(None));
    }

    #[test]
    fn a_refused_namespace_refunds_the_others() {
        let (_d, auth, limits) = setup("60");
        auth.registry.register("alpha", "id".into(), 1).unwrap();
        auth.registry.register("bravo", "id2".into(), 1).unwrap();
        let local = Local::new(auth);
        let (a, b) = (
            local.namespace(b"alpha").unwrap(),
            local.namespace(b"bravo").unwrap(),
        );
        let mut t = Tally::default();
        t.add(&a, 10);
        t.add(&b, 61);
        t.add(&a, 5);
        assert_eq!(t.entries.len(), 2);
        let err = local.spend_all(&limits, 1, &t).unwrap_err();
        assert_eq!((err.0, err.1.name()), (Refused::TooLarge, "bravo"));
        // alpha got its 15 back (one lease kept here, the rest in the shared bucket,
        // where another shard finds it): 60 are still there.
        assert_eq!(a.lease.get(), rate::lease_size(60, 1));
        let other = Local::new(local.auth.clone());
        let mut t = Tally::default();
        t.add(&other.namespace(b"alpha").unwrap(), 59);
        assert!(other.spend_all(&limits, 1, &t).is_ok());
        let mut t = Tally::default();
        t.add(&other.namespace(b"alpha").unwrap(), 1);
        assert!(other.spend_all(&limits, 1, &t).is_err());
        // This shard's lease holds the 60th.
        let mut t = Tally::default();
        t.add(&a, 1);
        assert!(local.spend_all(&limits, 1, &t).is_ok());
        assert!(matches!(
            local.spend_all(&limits, 1, &t),
            Err((Refused::RetryAfter(1), _))
        ));
    }

    #[test]
    fn tally_switches_to_an_index() {
        let (_d, auth, _) = setup("60");
        let names: Vec<String> = (0..20).map(|i| format!("ns{i:02}")).collect();
        for n in &names {
            auth.registry.register(n, "id".into(), 1).unwrap();
        }
        let local = Local::new(auth);
        let mut t = Tally::default();
        for round in 0..3 {
            for n in &names {
                t.add(&local.namespace(n.as_bytes()).unwrap(), round + 1);
            }
        }
        assert!(t.index.is_some());
        assert_eq!(t.entries.len(), 20);
        assert!(t.entries.iter().all(|(_, n)| *n == 6));
    }

    #[test]
    fn two_shards_share_one_limit_through_leases() {
        let (_d, auth, limits) = setup("1000");
        auth.registry.register("alpha", "id".into(), 1).unwrap();
        let shards = [Local::new(auth.clone()), Local::new(auth.clone())];
        let ns: Vec<_> = shards
            .iter()
            .map(|l| l.namespace(b"alpha").unwrap())
            .collect();
        let mut granted = 0;
        for i in 0..3000 {
            let s = i % 2;
            if shards[s].spend(&limits, 2, &ns[s], 1).is_ok() {
                granted += 1;
            }
        }
        // Never more than the limit; at most one lease (7 events) short of it.
        assert!(granted <= 1000, "{granted}");
        assert!(granted >= 1000 - 2 * rate::lease_size(1000, 2), "{granted}");
        // A change of the limits drops the leases.
        limits
            .apply(&crate::runtime::Update {
                rate_limit_enabled: Some(false),
                ..Default::default()
            })
            .unwrap();
        assert!(shards[0].spend(&limits, 2, &ns[0], 5_000).is_ok());
        assert_eq!(ns[0].lease.get(), 0);
    }
}
