//! `deploy/grafana-dashboard.json` against the real `/metrics`: every metric a panel
//! (or a variable) queries is one the server exposes, and every metric family the
//! server exposes is on some panel. A renamed or new metric fails here, naming it.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

fn dashboard() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana-dashboard.json");
    let text = std::fs::read_to_string(path).expect("deploy/grafana-dashboard.json");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// The `flux_…` names in a PromQL expression.
fn metric_names(expr: &str, out: &mut BTreeSet<String>) {
    let mut rest = expr;
    while let Some(i) = rest.find("flux_") {
        let before = rest[..i].chars().next_back();
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // Not the end of a longer identifier (`my_flux_x`).
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
}

/// Every panel, rows' nested panels included.
fn panels(v: &Value, out: &mut Vec<Value>) {
    for p in v["panels"].as_array().into_iter().flatten() {
        out.push(p.clone());
        panels(p, out);
    }
}

#[test]
fn every_panel_queries_metrics_the_server_exposes() {
    let d = dashboard();
    assert!(d["title"].is_string() && d["uid"].is_string());
    assert_eq!(
        d["__inputs"][0]["name"], "DS_PROMETHEUS",
        "importable: asks for a datasource"
    );

    let mut all = Vec::new();
    panels(&d, &mut all);
    let mut ids = BTreeSet::new();
    let mut queried = BTreeSet::new();
    let mut queries = 0;
    for p in all.iter().filter(|p| p["type"] != "row") {
        let title = p["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(p["id"].as_u64().expect("id")),
            "duplicate panel id: {title}"
        );
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!targets.is_empty(), "{title}: no queries");
        for t in targets {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: target without expr"));
            let mut names = BTreeSet::new();
            metric_names(expr, &mut names);
            assert!(!names.is_empty(), "{title}: `{expr}` names no flux metric");
            queried.extend(names);
            queries += 1;
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        metric_names(v["definition"].as_str().unwrap_or(""), &mut queried);
    }

    let srv = Server::start();
    srv.post_ok(&event("g-1", r#"{"a":1}"#));
    let text = srv.get("/metrics").text().to_string();
    let exposed: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();
    let families: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();

    let unknown: Vec<_> = queried.difference(&exposed).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics /metrics does not expose: {unknown:?}"
    );
    let shown = |f: &String| {
        queried.iter().any(|q| {
            q == f
                || q.strip_prefix(f.as_str())
                    .is_some_and(|s| ["_bucket", "_sum", "_count"].contains(&s))
        })
    };
    let missing: Vec<_> = families.iter().filter(|f| !shown(f)).collect();
    assert!(
        missing.is_empty(),
        "metrics with no panel in deploy/grafana-dashboard.json: {missing:?}"
    );
    eprintln!(
        "{} panels, {queries} queries over {} metric names; all exposed",
        ids.len(),
        queried.len()
    );
}

#[test]
fn metric_names_are_found_in_expressions() {
    let mut n = BTreeSet::new();
    metric_names(
        r#"histogram_quantile(0.9, sum by (le) (rate(flux_a_bucket{job="x"}[5m]))) / my_flux_b + flux_c"#,
        &mut n,
    );
    assert_eq!(
        n.into_iter().collect::<Vec<_>>(),
        ["flux_a_bucket", "flux_c"]
    );
}
