//! The layers of `src/` only point down: a module may name (`crate::x`, `super::x` out
//! of its own tree) only modules of the layers below its own. The table is the one in
//! `src/lib.rs` and ARCHITECTURE.md; a new module must be placed in it.

use std::collections::BTreeSet;
use std::path::Path;

/// Top to bottom. Modules within one layer may not name each other either, except
/// where listed in `SAME_LAYER`.
const LAYERS: &[&[&str]] = &[
    &["main"],
    &["server", "tools"],
    &["net"],
    &["api"],
    &["cluster"],
    &["ui"],
    &["ws"],
    &["metrics"],
    &["auth"],
    &["shard"],
    &["runtime"],
    &["config"],
    &["log"],
    &["state"],
    &["event"],
    &["ingest"],
    &["http"],
    &[
        "ids",
        "json",
        "time",
        "bytes",
        "limits",
        "failpoint",
        "dirlock",
    ],
];

/// Same-layer references that are allowed (none today).
const SAME_LAYER: &[(&str, &str)] = &[];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| {
            panic!("module `{module}` is not in the LAYERS table of tests/layers.rs")
        })
}

/// The top-level modules that `text` names through `crate::`.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn layers_only_point_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" {
            continue;
        }
        let own = layer_of(&module);
        let text = std::fs::read_to_string(f).unwrap();
        // `main.rs` is a separate crate that names the library as `flux::`.
        let text = if module == "main" {
            text.replace("flux::", "crate::")
        } else {
            text
        };
        for named in named_modules(&text) {
            if named == module || SAME_LAYER.contains(&(module.as_str(), named.as_str())) {
                continue;
            }
            if layer_of(&named) <= own {
                wrong.push(format!("{} names `{named}`", rel.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "modules naming a module of their own or a higher layer (see LAYERS):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_sees_a_reference_upward() {
    // A reference in code counts; one in a comment does not.
    let found = named_modules("use crate::api::Request; // crate::ws is mentioned");
    assert_eq!(found, BTreeSet::from(["api".to_string()]));
    assert!(layer_of("api") < layer_of("shard"));
}
