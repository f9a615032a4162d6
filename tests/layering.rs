//! Layers point down only: a module of `src/` may use another only if that one sits on a
//! lower layer. This test reads every file under `src/` and fails on the first import that
//! points up or sideways, naming the file, the line and the two layers.
//!
//! The order (also drawn in `src/lib.rs` and the README):
//!
//! ```text
//! 9 ctl
//! 8 server
//! 7 connection
//! 6 shard
//! 5 config alarm auth
//! 4 broker
//! 3 store
//! 2 io routing
//! 1 protocol ids message
//! 0 log counter stats trace
//! ```

use std::path::{Path, PathBuf};

/// (module, layer): a module may import from strictly lower layers only.
const LAYERS: &[(&str, u8)] = &[
    ("log", 0),
    ("counter", 0),
    ("stats", 0),
    ("trace", 0),
    ("protocol", 1),
    ("ids", 1),
    ("message", 1),
    ("io", 2),
    ("routing", 2),
    ("store", 3),
    ("broker", 4),
    ("config", 5),
    ("alarm", 5),
    ("auth", 5),
    ("shard", 6),
    ("connection", 7),
    ("server", 8),
    ("ctl", 9),
];

/// The logging macros live in `log`.
const LOG_MACROS: &[&str] = &["info", "warn", "error"];

fn layer_of(module: &str) -> Option<u8> {
    let module = if LOG_MACROS.contains(&module) {
        "log"
    } else {
        module
    };
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {dir:?}: {e}"));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (None: lib.rs, main.rs, bin/).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main" | "bin")).then(|| name.to_string())
}

/// Every module named after `crate::` on the line (use lists, paths and macro calls).
fn crate_refs(line: &str) -> Vec<String> {
    let mut refs = Vec::new();
    let code = line.split("//").next().unwrap_or("");
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = &rest[..at];
        rest = &rest[at + "crate::".len()..];
        if before.ends_with('$') {
            continue; // `$crate::` inside a macro names the defining crate, checked elsewhere
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            refs.push(name);
        }
    }
    refs
}

#[test]
fn every_import_points_to_a_lower_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let Some(own) = layer_of(&module) else {
            violations.push(format!(
                "{}: module '{module}' has no layer in LAYERS",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("read {file:?}: {e}"));
        for (n, line) in text.lines().enumerate() {
            for used in crate_refs(line) {
                let same_module =
                    used == module || (module == "log" && LOG_MACROS.contains(&used.as_str()));
                if same_module {
                    continue;
                }
                match layer_of(&used) {
                    Some(layer) if layer < own => {}
                    Some(layer) => violations.push(format!(
                        "{}:{}: '{module}' (layer {own}) uses '{used}' (layer {layer}): {}",
                        file.strip_prefix(&src).unwrap_or(file).display(),
                        n + 1,
                        line.trim()
                    )),
                    None => violations.push(format!(
                        "{}:{}: '{used}' has no layer in LAYERS",
                        file.display(),
                        n + 1
                    )),
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports must point to lower layers only; found:\n{}",
        violations.join("\n")
    );
}

#[test]
fn every_module_of_src_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    for line in lib.lines() {
        let Some(name) = line.trim().strip_prefix("pub mod ") else {
            continue;
        };
        let name = name.trim_end_matches(';');
        assert!(
            layer_of(name).is_some(),
            "expected module '{name}' of src/lib.rs to have a layer in LAYERS"
        );
    }
}

#[test]
fn the_layer_check_catches_an_upward_import() {
    // The checker itself: `crate::shard` from the broker layer is upward.
    assert_eq!(crate_refs("use crate::shard::Shard;"), vec!["shard"]);
    assert_eq!(
        crate_refs("    crate::warn!(\"x\"); // crate::server"),
        vec!["warn"]
    );
    assert!(crate_refs("$crate::protocol::x").is_empty());
    assert!(layer_of("shard") > layer_of("broker"));
}
