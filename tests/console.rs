//! The browser console (`GET /`, `/ui/…`): its HTTP answers, and the page itself
//! driven in headless Chromium (`tests/browser/console.mjs`, playwright-core).
//!
//! The browser tests need `node` (18 or newer), Debian's `chromium` (or `CHROMIUM`
//! naming another binary) and `npm ci --prefix tests/browser`; `.ci/run` installs all
//! three. Missing, they fail the test, naming what to install: a console test that
//! silently did not run would look like a passing one. Only an explicit
//! `FLUX_SKIP_BROWSER_TESTS=1` skips them (and says so).
//!
//! `FLUX_CONSOLE_SCREENSHOTS=docs` (a directory) also saves the screenshots the README
//! shows.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::*;

/// The browser tests run one at a time: two Chromiums on a 2-core machine would make
/// the "within a second" checks measure the machine, not the console.
static BROWSER: Mutex<()> = Mutex::new(());

const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn assets_have_types_etags_and_a_strict_csp() {
    let srv = Server::start();
    let mut weight = 0;
    for (path, ty) in [
        ("/", "text/html; charset=utf-8"),
        ("/ui/console.js", "text/javascript; charset=utf-8"),
        ("/ui/console.css", "text/css; charset=utf-8"),
    ] {
        let r = srv.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(ty), "{path}");
        let csp = r.header("content-security-policy").expect("CSP");
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        let etag = r.header("etag").expect("ETag").to_string();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        weight += r.body.len();

        // 304 and HEAD answers have no body (RFC 9110 §15.4.5, §9.3.2): read heads only,
        // then a GET on the same connection shows that no stray bytes followed them.
        let mut c = srv.connect();
        c.send(&build_request(
            "GET",
            path,
            &[("If-None-Match", &etag)],
            None,
        ));
        let again = c.try_read_head().expect("304 head");
        assert_eq!(again.status, 304, "{path}");
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        assert_eq!(again.header("content-length"), None);
        c.send(&build_request("HEAD", path, &[], None));
        let head = c.try_read_head().expect("HEAD head");
        assert_eq!(head.status, 200);
        assert_eq!(
            head.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        c.send(&build_request(
            "GET",
            path,
            &[("If-None-Match", "\"stale\", W/\"x\"")],
            None,
        ));
        let other = c.read_response();
        assert_eq!(other.status, 200);
        assert_eq!(other.body, r.body);
    }
    eprintln!("console page weight: {weight} bytes (HTML + JS + CSS, uncompressed)");
    assert!(
        weight < 64 * 1024,
        "the console stays small: {weight} bytes"
    );
    assert_eq!(srv.get("/ui/missing.js").status, 404);
    assert_eq!(srv.post("/", "{}").status, 405);
    // The API is untouched by the console's routes.
    assert_eq!(srv.get("/health").status, 200);
}

#[test]
fn console_in_chromium_with_auth_off() {
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(node) = browser_prerequisites() else {
        return;
    };
    let srv = Server::start_with(&[("FLUX_METRICS_INTERVAL_MS", "250")]);
    run_browser(&node, "open", &srv, &[]);
}

#[test]
fn console_in_chromium_with_auth_on() {
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(node) = browser_prerequisites() else {
        return;
    };
    let admin = "console-test-admin-token-0123456789abcdef";
    let srv = Server::start_with(&[
        ("FLUX_AUTH_ENABLED", "true"),
        ("FLUX_ADMIN_TOKEN", admin),
        ("FLUX_METRICS_INTERVAL_MS", "250"),
    ]);
    run_browser(&node, "auth", &srv, &[("FLUX_ADMIN", admin)]);
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// `node`, once node, chromium and playwright-core are all present; panics naming
/// what is missing (None only with `FLUX_SKIP_BROWSER_TESTS=1`). What is missing is
/// installed first, once per test process, so that the README's test command passes
/// on a fresh machine: playwright-core with `npm ci` (pinned by
/// tests/browser/package-lock.json), and Node.js, npm and chromium with Debian's
/// `apt-get` when running as root (as CI does).
fn browser_prerequisites() -> Option<String> {
    if std::env::var("FLUX_SKIP_BROWSER_TESTS").as_deref() == Ok("1") {
        eprintln!("FLUX_SKIP_BROWSER_TESTS=1: the console's browser test was NOT run");
        return None;
    }
    static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(|| {
        if !missing_prerequisites().is_empty() {
            install_prerequisites();
        }
    });
    let missing = missing_prerequisites();
    assert!(
        missing.is_empty(),
        "the console's browser test needs: {}. `.ci/run` installs them; \
         FLUX_SKIP_BROWSER_TESTS=1 skips this test explicitly",
        missing.join(", ")
    );
    Some(node())
}

fn node() -> String {
    std::env::var("NODE").unwrap_or_else(|_| "node".into())
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn runs(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn missing_prerequisites() -> Vec<String> {
    let mut missing = Vec::new();
    if !runs(&node(), "--version") {
        missing.push(format!(
            "`{}` (Node.js 18+: apt-get install nodejs npm)",
            node()
        ));
    }
    if !Path::new(&chromium()).exists() {
        missing.push(format!("{} (apt-get install chromium)", chromium()));
    }
    if !browser_dir().join("node_modules/playwright-core").is_dir() {
        missing.push("playwright-core (npm ci --prefix tests/browser)".into());
    }
    missing
}

/// Installs what is missing where it can (see `browser_prerequisites`); what it cannot
/// install is reported by the caller.
fn install_prerequisites() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let need_debian = !runs(&node(), "--version")
        || !runs("npm", "--version")
        || !Path::new(&chromium()).exists();
    if need_debian && root && runs("apt-get", "--version") {
        eprintln!("installing nodejs, npm and chromium with apt-get for the browser test");
        let ok = Command::new("sh")
            .args([
                "-c",
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
                 apt-get install -y -qq nodejs npm chromium",
            ])
            .status()
            .is_ok_and(|s| s.success());
        eprintln!("apt-get install: {}", if ok { "done" } else { "failed" });
    }
    if !browser_dir().join("node_modules/playwright-core").is_dir() && runs("npm", "--version") {
        eprintln!("installing playwright-core (npm ci in tests/browser)");
        let _ = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(browser_dir())
            .status();
    }
}

fn run_browser(node: &str, mode: &str, srv: &Server, env: &[(&str, &str)]) {
    let (status, output) = run_bounded_output(
        Command::new(node)
            .arg(browser_dir().join("console.mjs"))
            .arg(mode)
            .arg(srv.base())
            .envs(env.iter().copied()),
        BROWSER_TIMEOUT,
    );
    eprintln!("{output}");
    assert!(
        status.is_some_and(|s| s.success()),
        "browser checks ({mode}) failed (exit {status:?}; None: killed after {BROWSER_TIMEOUT:?}):\n{output}\nserver log:\n{}",
        srv.log()
    );
}
