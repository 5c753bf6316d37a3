//! Pure mapping of (method, percent-decoded path) to an endpoint.

use super::parse::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Health,
    PostEvent,
    /// `GET /api/events?entity=…`: an entity's stored events.
    History,
    PostBatch,
    ListEntities,
    /// `GET /api/state/entities/:id`; the id is the rest of the decoded path.
    GetEntity,
    /// `DELETE /api/state/entities/:id`.
    DeleteEntity,
    /// `POST /api/state/entities/delete` (GET and DELETE of that path name the entity
    /// `delete`).
    BatchDelete,
    /// `GET /api/ws` with a WebSocket upgrade.
    WebSocket,
    /// `GET /metrics` (Prometheus text).
    Metrics,
    /// `POST /api/namespaces` (admin): register a namespace.
    RegisterNamespace,
    /// `GET /api/state/namespaces` (and `GET /api/namespaces`): the namespaces the
    /// token may see.
    ListNamespaces,
    /// `GET /api/namespaces/:name`; the name is the rest of the decoded path.
    GetNamespace,
    /// `DELETE /api/namespaces/:name` (admin).
    DeleteNamespace,
    /// `GET /api/admin/config`.
    GetConfig,
    /// `PUT /api/admin/config` (admin).
    PutConfig,
    /// `POST /api/admin/backup` (admin): an online backup into a directory.
    Backup,
    /// `GET /` and `GET /ui/…`: the browser console's static assets (`ui`).
    Console,
    /// `GET /api/cluster`: cluster mode's groups and their owners.
    ClusterStatus,
    /// `POST /api/internal/part?group=G[&txn=T]` (cluster mode, between nodes): a
    /// group's part for its owner.
    InternalPart,
    /// `GET /api/internal/page?prefix=&after=&max=` (cluster mode, between nodes):
    /// one page of this node's own entities, for another node's listing.
    InternalPage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Found(Endpoint),
    /// Known path, wrong method: 405 with this `Allow` header line.
    MethodNotAllowed(&'static [u8]),
    NotFound,
}

pub const ENTITY_PREFIX: &[u8] = b"/api/state/entities/";
pub const NAMESPACE_PREFIX: &[u8] = b"/api/namespaces/";
pub const CONSOLE_PREFIX: &[u8] = b"/ui/";

/// Which body limit applies to a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyClass {
    Single,
    Batch,
    Other,
}

impl Route {
    pub fn body_class(self) -> BodyClass {
        match self {
            Route::Found(Endpoint::PostBatch | Endpoint::BatchDelete | Endpoint::InternalPart) => {
                BodyClass::Batch
            }
            Route::Found(Endpoint::PostEvent) => BodyClass::Single,
            _ => BodyClass::Other,
        }
    }
}

pub fn route(method: Method, path: &[u8]) -> Route {
    use Endpoint::*;
    use Method::*;
    let one = |m: Method, want: Method, e: Endpoint, allow: &'static [u8]| {
        if m == want {
            Route::Found(e)
        } else {
            Route::MethodNotAllowed(allow)
        }
    };
    match path {
        b"/health" => one(method, Get, Health, b"Allow: GET, HEAD\r\n"),
        b"/" => one(method, Get, Console, b"Allow: GET, HEAD\r\n"),
        _ if path.starts_with(CONSOLE_PREFIX) => one(method, Get, Console, b"Allow: GET, HEAD\r\n"),
        b"/api/events" => match method {
            Post => Route::Found(PostEvent),
            Get => Route::Found(History),
            _ => Route::MethodNotAllowed(b"Allow: GET, HEAD, POST\r\n"),
        },
        b"/api/events/batch" => one(method, Post, PostBatch, b"Allow: POST\r\n"),
        b"/api/state/entities" => one(method, Get, ListEntities, b"Allow: GET, HEAD\r\n"),
        b"/api/ws" => one(method, Get, WebSocket, b"Allow: GET\r\n"),
        b"/metrics" => one(method, Get, Metrics, b"Allow: GET, HEAD\r\n"),
        b"/api/state/entities/delete" => match method {
            Post => Route::Found(BatchDelete),
            Get => Route::Found(GetEntity),
            Delete => Route::Found(DeleteEntity),
            _ => Route::MethodNotAllowed(b"Allow: GET, HEAD, POST, DELETE\r\n"),
        },
        b"/api/namespaces" => match method {
            Post => Route::Found(RegisterNamespace),
            Get => Route::Found(ListNamespaces),
            _ => Route::MethodNotAllowed(b"Allow: GET, HEAD, POST\r\n"),
        },
        b"/api/admin/backup" => one(method, Post, Backup, b"Allow: POST\r\n"),
        b"/api/cluster" => one(method, Get, ClusterStatus, b"Allow: GET, HEAD\r\n"),
        b"/api/internal/part" => one(method, Post, InternalPart, b"Allow: POST\r\n"),
        b"/api/internal/page" => one(method, Get, InternalPage, b"Allow: GET\r\n"),
        b"/api/state/namespaces" => one(method, Get, ListNamespaces, b"Allow: GET, HEAD\r\n"),
        b"/api/admin/config" => match method {
            Get => Route::Found(GetConfig),
            Put => Route::Found(PutConfig),
            _ => Route::MethodNotAllowed(b"Allow: GET, HEAD, PUT\r\n"),
        },
        _ if path.len() > NAMESPACE_PREFIX.len() && path.starts_with(NAMESPACE_PREFIX) => {
            match method {
                Get => Route::Found(GetNamespace),
                Delete => Route::Found(DeleteNamespace),
                _ => Route::MethodNotAllowed(b"Allow: GET, HEAD, DELETE\r\n"),
            }
        }
        _ if path.len() > ENTITY_PREFIX.len() && path.starts_with(ENTITY_PREFIX) => match method {
            Get => Route::Found(GetEntity),
            Delete => Route::Found(DeleteEntity),
            _ => Route::MethodNotAllowed(b"Allow: GET, HEAD, DELETE\r\n"),
        },
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route(Method::Get, b"/health"),
            Route::Found(Endpoint::Health)
        );
        assert_eq!(
            route(Method::Post, b"/api/events"),
            Route::Found(Endpoint::PostEvent)
        );
        assert_eq!(
            route(Method::Post, b"/api/events/batch"),
            Route::Found(Endpoint::PostBatch)
        );
        assert_eq!(
            route(Method::Get, b"/api/state/entities"),
            Route::Found(Endpoint::ListEntities)
        );
        assert_eq!(
            route(Method::Get, b"/api/state/entities/a/b"),
            Route::Found(Endpoint::GetEntity)
        );
        assert_eq!(route(Method::Get, b"/api/state/entities/"), Route::NotFound);
        assert_eq!(route(Method::Get, b"/nope"), Route::NotFound);
        assert_eq!(
            route(Method::Get, b"/api/events/batch"),
            Route::MethodNotAllowed(b"Allow: POST\r\n")
        );
        assert_eq!(
            route(Method::Delete, b"/health"),
            Route::MethodNotAllowed(b"Allow: GET, HEAD\r\n")
        );
    }

    #[test]
    fn deletion_websocket_and_metrics_routes() {
        use Endpoint::*;
        let r = |m, p: &[u8]| route(m, p);
        assert_eq!(
            r(Method::Delete, b"/api/state/entities/a/b"),
            Route::Found(DeleteEntity)
        );
        assert_eq!(
            r(Method::Post, b"/api/state/entities/delete"),
            Route::Found(BatchDelete)
        );
        assert_eq!(
            r(Method::Get, b"/api/state/entities/delete"),
            Route::Found(GetEntity)
        );
        assert_eq!(
            r(Method::Delete, b"/api/state/entities/delete"),
            Route::Found(DeleteEntity)
        );
        assert_eq!(
            r(Method::Put, b"/api/state/entities/delete"),
            Route::MethodNotAllowed(b"Allow: GET, HEAD, POST, DELETE\r\n")
        );
        assert_eq!(
            r(Method::Post, b"/api/state/entities/x"),
            Route::MethodNotAllowed(b"Allow: GET, HEAD, DELETE\r\n")
        );
        assert_eq!(r(Method::Get, b"/api/ws"), Route::Found(WebSocket));
        assert_eq!(
            r(Method::Post, b"/api/ws"),
            Route::MethodNotAllowed(b"Allow: GET\r\n")
        );
        assert_eq!(r(Method::Get, b"/metrics"), Route::Found(Metrics));
        assert_eq!(
            r(Method::Post, b"/api/state/entities/delete").body_class(),
            BodyClass::Batch
        );
    }

    #[test]
    fn namespace_and_admin_routes() {
        use Endpoint::*;
        let r = |m, p: &[u8]| route(m, p);
        assert_eq!(
            r(Method::Post, b"/api/namespaces"),
            Route::Found(RegisterNamespace)
        );
        assert_eq!(
            r(Method::Get, b"/api/namespaces"),
            Route::Found(ListNamespaces)
        );
        assert_eq!(
            r(Method::Get, b"/api/state/namespaces"),
            Route::Found(ListNamespaces)
        );
        assert_eq!(
            r(Method::Get, b"/api/namespaces/abc"),
            Route::Found(GetNamespace)
        );
        assert_eq!(
            r(Method::Delete, b"/api/namespaces/abc"),
            Route::Found(DeleteNamespace)
        );
        assert_eq!(r(Method::Get, b"/api/namespaces/"), Route::NotFound);
        assert_eq!(
            r(Method::Post, b"/api/namespaces/abc"),
            Route::MethodNotAllowed(b"Allow: GET, HEAD, DELETE\r\n")
        );
        assert_eq!(
            r(Method::Get, b"/api/admin/config"),
            Route::Found(GetConfig)
        );
        assert_eq!(
            r(Method::Put, b"/api/admin/config"),
            Route::Found(PutConfig)
        );
        assert_eq!(
            r(Method::Post, b"/api/admin/config"),
            Route::MethodNotAllowed(b"Allow: GET, HEAD, PUT\r\n")
        );
        // Small bodies under the fixed limit: lowering the runtime body limits must
        // never lock the admin out of changing them back.
        assert_eq!(
            r(Method::Put, b"/api/admin/config").body_class(),
            BodyClass::Other
        );
        assert_eq!(
            r(Method::Post, b"/api/namespaces").body_class(),
            BodyClass::Other
        );
    }

    #[test]
    fn console_routes() {
        use Endpoint::*;
        assert_eq!(route(Method::Get, b"/"), Route::Found(Console));
        assert_eq!(route(Method::Get, b"/ui/console.js"), Route::Found(Console));
        assert_eq!(route(Method::Get, b"/ui/"), Route::Found(Console));
        assert_eq!(
            route(Method::Post, b"/"),
            Route::MethodNotAllowed(b"Allow: GET, HEAD\r\n")
        );
        assert_eq!(route(Method::Get, b"/uix"), Route::NotFound);
    }

    #[test]
    fn body_classes() {
        assert_eq!(
            route(Method::Post, b"/api/events").body_class(),
            BodyClass::Single
        );
        assert_eq!(
            route(Method::Post, b"/api/events/batch").body_class(),
            BodyClass::Batch
        );
        assert_eq!(
            route(Method::Get, b"/health").body_class(),
            BodyClass::Other
        );
    }
}
