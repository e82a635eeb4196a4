//! The domain does no file-system I/O and links no I/O crate: its sources
//! name no file-system call, and its dependencies are the few that only
//! compute. Reading and writing files is agentq-shared's.

use std::path::{Path, PathBuf};

/// Text in a source file that means file-system use.
const FILE_SYSTEM: &[&str] = &[
    "std::fs",
    "fs::",
    "OpenOptions",
    "File::",
    "symlink_metadata",
    "read_dir",
    "read_to_string",
    ".exists()",
    "libc::",
    "tempfile",
];

/// The domain's dependencies: none of them does I/O. A new one belongs here
/// only if it does none either.
const DEPENDENCIES: &[&str] = &[
    "chrono",
    // Cron expressions (`[[schedule]]`): parsing and next-tick arithmetic only.
    "croner",
    "chrono-tz",
    "regex",
    "serde",
    "serde_json",
    "thiserror",
    "toml",
    "ulid",
];

/// Crates that do I/O, in no dependency table of the domain (tests included).
const IO_CRATES: &[&str] = &[
    "apalis",
    "apalis-redis",
    "bollard",
    "futures",
    "libc",
    "nix",
    "redis",
    "reqwest",
    "rustls",
    "tempfile",
    "tokio",
    "walkdir",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_source_of_the_domain_uses_the_file_system() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    files.sort();
    assert!(
        files.len() > 10,
        "the domain's sources not found: {files:?}"
    );
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            for pat in FILE_SYSTEM.iter().filter(|p| line.contains(*p)) {
                let rel = f.strip_prefix(root).unwrap().display();
                found.push(format!("{rel}:{}: `{pat}` in: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "agentq-domain uses the file system (move it to agentq-shared):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_domain_depends_on_no_io_crate() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let doc: toml::Table = std::fs::read_to_string(manifest).unwrap().parse().unwrap();
    let names = |table: &str| -> Vec<String> {
        doc.get(table)
            .and_then(|t| t.as_table())
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    };
    let deps = names("dependencies");
    let unknown: Vec<_> = deps
        .iter()
        .filter(|d| !DEPENDENCIES.contains(&d.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "agentq-domain depends on {unknown:?}, not among the crates that do no I/O ({DEPENDENCIES:?})"
    );
    for table in ["dependencies", "dev-dependencies", "build-dependencies"] {
        let io: Vec<_> = names(table)
            .into_iter()
            .filter(|d| IO_CRATES.contains(&d.as_str()))
            .collect();
        assert!(
            io.is_empty(),
            "agentq-domain's [{table}] has I/O crates: {io:?}"
        );
    }
}
