//! The crate layering of DESIGN.md, checked from the manifests: each crate may depend only on
//! crates below it.

use std::path::Path;

/// Top to bottom, as in DESIGN.md.
const ORDER: &[&str] = &[
    "berth-cli",
    "berth-compose",
    "berth-api",
    "berth-engine",
    "berth-build",
    "berth-network",
    "berth-registry",
    "berth-image",
    "berth-shim",
    "berth-runtime",
];

/// The `berth-*` names in a manifest's `[dependencies]` (not dev-dependencies).
fn berth_deps(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_deps = l == "[dependencies]";
            continue;
        }
        if in_deps && l.starts_with("berth-") {
            let name: String = l
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            out.push(name);
        }
    }
    out
}

#[test]
fn crates_depend_only_downwards() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let crates = std::fs::read_dir(root.join("crates")).expect("crates/");
    let mut checked = 0;
    for entry in crates {
        let dir = entry.unwrap().path();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("manifest");
        let name = manifest
            .lines()
            .find_map(|l| l.trim().strip_prefix("name = \""))
            .map(|s| s.trim_end_matches('"').to_owned())
            .expect("package name");
        let pos = ORDER.iter().position(|n| *n == name).unwrap_or_else(|| {
            panic!("{name} is not in the design's crate order; add it to DESIGN.md and ORDER")
        });
        for dep in berth_deps(&manifest) {
            let dpos = ORDER.iter().position(|n| *n == dep).expect("known crate");
            assert!(dpos > pos, "{name} depends on {dep}, which is not below it");
        }
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} crates found");
}

#[test]
fn the_checker_catches_an_upward_dependency() {
    let deps = berth_deps(
        "[package]\nname = \"x\"\n[dependencies]\nberth-api.workspace = true\n[dev-dependencies]\nberth-cli.workspace = true\n",
    );
    assert_eq!(deps, vec!["berth-api".to_owned()]);
}
