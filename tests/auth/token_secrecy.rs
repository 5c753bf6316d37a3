//! Auth mode: token secrecy.

use super::fixture::*;

#[test]
fn tokens_appear_only_in_the_registration_answer() {
    let mut fx = Fixture::start(&[("FLUX_RATE_LIMIT_PER_MINUTE", "60")]);
    let charlie = register(&fx.srv, "charlie");
    let secrets = [
        ADMIN,
        fx.alpha.as_str(),
        fx.bravo.as_str(),
        charlie.as_str(),
    ]
    .map(String::from);
    let mut seen: Vec<(String, Response)> = Vec::new();
    {
        let srv = &fx.srv;
        let (alpha, bravo) = (&fx.alpha, &fx.bravo);
        let mut keep = |what: &str, r: Response| seen.push((what.to_string(), r));
        keep("write", write_as(srv, alpha, "alpha/s", r#"{"s":1}"#));
        keep("foreign write", write_as(srv, alpha, "bravo/s", "{}"));
        keep("no namespace", write_as(srv, alpha, "plain", "{}"));
        keep(
            "foreign batch",
            batch_as(
                srv,
                alpha,
                &[event("alpha/t", "{}"), event("bravo/t", "{}")],
            ),
        );
        keep(
            "read",
            as_token(srv, alpha, "GET", &entity_path("alpha/s"), None),
        );
        keep(
            "foreign read",
            as_token(srv, alpha, "GET", &entity_path("bravo/s"), None),
        );
        keep(
            "listing",
            as_token(srv, alpha, "GET", "/api/state/entities", None),
        );
        keep(
            "history",
            as_token(srv, alpha, "GET", "/api/events?entity=alpha%2Fs", None),
        );
        keep(
            "namespaces",
            as_admin(srv, "GET", "/api/state/namespaces", None),
        );
        keep(
            "own namespaces",
            as_token(srv, alpha, "GET", "/api/state/namespaces", None),
        );
        keep(
            "namespace",
            as_admin(srv, "GET", "/api/namespaces/alpha", None),
        );
        keep(
            "own namespace",
            as_token(srv, alpha, "GET", "/api/namespaces/alpha", None),
        );
        keep("metrics", as_token(srv, alpha, "GET", "/metrics", None));
        keep("admin metrics", as_admin(srv, "GET", "/metrics", None));
        keep("config", as_admin(srv, "GET", "/api/admin/config", None));
        keep(
            "config as alpha",
            as_token(srv, alpha, "GET", "/api/admin/config", None),
        );
        keep(
            "register as alpha",
            as_token(
                srv,
                alpha,
                "POST",
                "/api/namespaces",
                Some(r#"{"name":"delta"}"#),
            ),
        );
        keep(
            "duplicate",
            as_admin(srv, "POST", "/api/namespaces", Some(r#"{"name":"alpha"}"#)),
        );
        keep(
            "token as the name",
            as_admin(
                srv,
                "POST",
                "/api/namespaces",
                Some(&json!({ "name": alpha }).to_string()),
            ),
        );
        keep(
            "longer token",
            write_as(srv, &format!("{alpha}0"), "alpha/u", "{}"),
        );
        keep(
            "Basic",
            call(
                srv,
                "GET",
                "/api/state/entities",
                Some(&format!("Basic {alpha}")),
                None,
            ),
        );
        keep(
            "token as the entity id",
            write_as(srv, alpha, &format!("bravo/{alpha}"), "{}"),
        );
        keep(
            "delete foreign",
            as_token(srv, alpha, "DELETE", &entity_path("bravo/s"), None),
        );
        // Over the rate limit.
        let over: Vec<String> = (0..61)
            .map(|i| event(&format!("alpha/o-{i}"), "{}"))
            .collect();
        keep("too large a batch", batch_as(srv, alpha, &over));
        // WebSockets by header and ?token=, with an error message and a refusal.
        let mut c = ws_connect(srv, &format!("/api/ws?token={alpha}"), None);
        c.subscribe("*");
        c.send_text(&json!({"type": "subscribe", "entity_id": "bravo/s"}).to_string());
        let err = c.wait_for("error", T);
        let mut h = ws_connect(srv, "/api/ws", Some(&bearer(bravo)));
        h.subscribe("bravo/*");
        write_ok(srv, bravo, "bravo/ws", r#"{"w":1}"#);
        let upd = h.wait_for("state_update", T);
        for (what, v) in [("ws error", err), ("ws update", upd)] {
            let text = v.to_string();
            for s in &secrets {
                assert!(!text.contains(s.as_str()), "{what} shows a token: {text}");
            }
        }
        keep(
            "ws refused",
            ws_try(srv, &format!("/api/ws?token={alpha}x"), None)
                .err()
                .expect("refused"),
        );
        // A deleted namespace's token.
        keep(
            "delete charlie",
            as_admin(srv, "DELETE", "/api/namespaces/charlie", None),
        );
        keep("dead token", write_as(srv, &charlie, "charlie/x", "{}"));
    }
    for (what, r) in &seen {
        let mut text = String::from_utf8_lossy(&r.body).into_owned();
        for (k, v) in &r.headers {
            text.push_str(&format!("\n{k}: {v}"));
        }
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "{what} ({}) shows a token:\n{text}",
                r.status
            );
        }
    }
    // Nor in the server's output, while it runs and after it stopped.
    let check_log = |log: &str, when: &str| {
        for s in &secrets {
            assert!(
                !log.contains(s.as_str()),
                "the log {when} shows a token:\n{log}"
            );
        }
    };
    check_log(&fx.srv.log(), "while running");
    // Nor in the registry file: only hashes are stored.
    let file = std::fs::read(fx.srv.data_dir().join("namespaces")).expect("registry file");
    let file = String::from_utf8_lossy(&file);
    for s in &secrets {
        assert!(
            !file.contains(s.as_str()),
            "the registry file holds a token"
        );
    }
    fx.srv.stop();
    check_log(&fx.srv.log(), "after stopping");
}
