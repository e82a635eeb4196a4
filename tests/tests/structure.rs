//! The module structure of the crates, as `scripts/check-structure` checks
//! it: no import cycles between the modules of producer, shared or
//! shared/domain (cycles listed in `scripts/structure-allow.txt` aside, until
//! they are broken). Oversize files and the worker's cycles are printed, not
//! failed on, for now.
//!
//! The other tests run the script on small made-up crates, so that a check
//! that finds nothing is not a check that cannot find anything.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `scripts/check-structure` with `args`.
fn check(args: &[&str]) -> Output {
    Command::new(workspace().join("scripts/check-structure"))
        .args(args)
        .output()
        .expect("scripts/check-structure runs (it needs python3)")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Writes `files` (path, text) under `root`.
fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (path, body) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
}

#[test]
fn the_crates_have_no_import_cycles() {
    let out = check(&[]);
    assert!(
        out.status.success(),
        "scripts/check-structure found import cycles:\n{}",
        text(&out)
    );
}

#[test]
fn a_cycle_between_two_modules_fails_the_check() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[
            ("producer/src/main.rs", "mod a;\nmod b;\nfn main() {}\n"),
            ("producer/src/a.rs", "use crate::b::B;\npub struct A;\n"),
            (
                "producer/src/b.rs",
                "pub struct B;\nfn f() -> crate::a::A { crate::a::A }\n",
            ),
        ],
    );
    let root = dir.path().to_str().unwrap();
    let allow = dir.path().join("allow.txt");
    std::fs::write(&allow, "").unwrap();
    let allow = allow.to_str().unwrap();
    let out = check(&["--root", root, "--allow", allow]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("cycle in producer: a <-> b: ERROR"), "{said}");
    assert!(said.contains("producer/src/a.rs:1: crate::b::B"), "{said}");
    assert!(said.contains("producer/src/b.rs:2: crate::a::A"), "{said}");

    // Listed in the allow-list, it is reported, not failed on.
    std::fs::write(
        dir.path().join("allow.txt"),
        "# to be broken\nproducer: b <-> a\n",
    )
    .unwrap();
    let out = check(&["--root", root, "--allow", allow]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("a <-> b: allowed for now"), "{said}");

    // The same cycle in the worker is a warning only, for now.
    let worker = dir.path().join("worker");
    std::fs::rename(dir.path().join("producer"), &worker).unwrap();
    let out = check(&["--root", root, "--allow", allow]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("cycle in worker: a <-> b: warning"), "{said}");
    assert!(
        said.contains("allow-list entry no longer needed, remove it: producer: a <-> b"),
        "{said}"
    );
}

#[test]
fn files_of_one_directory_in_a_circle_fail_but_a_mod_rs_and_its_files_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let tests_block = format!(
        "#[cfg(test)]\nmod tests {{\n{}}}\n",
        "    // a test line\n".repeat(50)
    );
    // In a test block `super` is the file's own module: long's tests use its
    // own `too_long`, not the module too_long (which uses long).
    let long = format!(
        "pub fn too_long() {{}}\n{}#[cfg(test)]\nmod tests {{\n    use super::too_long;\n}}\n",
        "pub fn f() {}\n".repeat(599)
    );
    let too_long = format!(
        "use crate::long::f;\n{}{tests_block}",
        "pub fn f() {}\n".repeat(600)
    );
    write_tree(
        dir.path(),
        &[
            ("shared/src/lib.rs", "pub mod web;\npub mod long;\npub mod too_long;\n"),
            (
                "shared/src/web/mod.rs",
                // The parent uses its files and they use it: not a cycle.
                "pub mod api;\npub mod pages;\npub mod auth;\npub struct App;\npub fn router() { api::f(); }\n",
            ),
            (
                "shared/src/web/api.rs",
                "use super::{auth::Authorized, App};\npub fn f() {}\n",
            ),
            (
                "shared/src/web/auth.rs",
                "use super::pages;\n// super::api::f in a comment is no reference\npub struct Authorized;\n",
            ),
            (
                "shared/src/web/pages.rs",
                "use super::{\n    api::{self, f as g},\n    App,\n};\nconst S: &str = \"crate::web::auth\";\n",
            ),
            ("shared/src/long.rs", long.as_str()),
            ("shared/src/too_long.rs", too_long.as_str()),
        ],
    );
    let root = dir.path().to_str().unwrap();
    let allow = dir.path().join("none.txt");
    let out = check(&["--root", root, "--allow", allow.to_str().unwrap()]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("cycle in shared: web::api <-> web::auth <-> web::pages: ERROR"),
        "{said}"
    );
    assert_eq!(said.matches("cycle in").count(), 1, "{said}");
    // Only one edge leads from auth (the comment and the string are no references).
    assert!(
        said.contains("web::auth -> web::pages  (shared/src/web/auth.rs:1: super::pages)"),
        "{said}"
    );
    assert!(!said.contains("auth.rs:2"), "{said}");
    assert!(!said.contains("web::pages -> web::auth"), "{said}");
    // Code lines count, a trailing test block does not.
    assert!(
        said.contains("oversize (warning): shared/src/too_long.rs: 601 lines"),
        "{said}"
    );
    assert!(!said.contains("long.rs: 600"), "{said}");
}
