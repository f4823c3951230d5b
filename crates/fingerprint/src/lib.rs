//! Build-time fingerprints of stage code, for stage manifests.
//!
//! A stage's build script calls [`emit`]; it hashes the sources of the stage's crate and of every
//! workspace crate it depends on (transitively, through `sekator-*` entries of `[dependencies]`), and sets
//! `SEKATOR_CODE` for the crate's code (`env!("SEKATOR_CODE")`). Tests, benches, examples and Markdown are
//! left out: a README edit or a new test does not rerun a stage. Dependency versions (Cargo.lock) are left
//! out too, since any crate's new dependency would change them for every stage.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Top-level entries of a crate directory that are not the code it builds.
const SKIPPED: [&str; 5] = ["tests", "benches", "examples", "target", "fixtures"];

/// Prints the `cargo:` lines of a build script: `SEKATOR_CODE` and what to rerun it on.
pub fn emit() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run from a build script"));
    let (code, watched) = fingerprint(&dir);
    println!("cargo:rustc-env=SEKATOR_CODE={code}");
    for p in watched {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}

/// The fingerprint of the crate at `dir` and its workspace dependencies (16 hex digits), and the paths
/// hashed (files and directories, for `rerun-if-changed`).
pub fn fingerprint(dir: &Path) -> (String, Vec<PathBuf>) {
    let crates = closure(dir);
    let mut h = Sha256::new();
    let mut watched = vec![];
    for (name, cdir) in &crates {
        let mut files = vec![];
        for entry in sorted_entries(cdir) {
            let top = entry.file_name().map(|n| n.to_string_lossy().to_string());
            if top.is_some_and(|t| SKIPPED.contains(&t.as_str()) || t.starts_with('.')) {
                continue;
            }
            collect(&entry, &mut files);
            watched.push(entry);
        }
        for f in files {
            let rel = f.strip_prefix(cdir).unwrap_or(&f);
            h.update(format!("\n{name}/{}\n", rel.display()).as_bytes());
            h.update(std::fs::read(&f).unwrap_or_default());
        }
    }
    (hex::encode(&h.finalize()[..8]), watched)
}

/// Package name -> directory of the crate at `dir` and of every `sekator-*` crate it depends on.
fn closure(dir: &Path) -> BTreeMap<String, PathBuf> {
    let workspace = workspace_paths(dir);
    let mut out = BTreeMap::new();
    let mut todo = vec![(package_name(dir), dir.to_path_buf())];
    let mut seen = BTreeSet::new();
    while let Some((name, d)) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        for (dep, path) in sekator_deps(&d) {
            let p = path.or_else(|| workspace.get(&dep).cloned());
            if let Some(p) = p {
                todo.push((dep, p));
            }
        }
        out.insert(name, d);
    }
    out
}

fn read_manifest(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default()
}

fn package_name(dir: &Path) -> String {
    let text = read_manifest(dir);
    let name = section_lines(&text, "package")
        .find_map(|(k, v)| (k == "name").then(|| v.trim_matches('"').to_string()));
    name.unwrap_or_else(|| dir.display().to_string())
}

/// `key = value` lines of `[section]` (a plain hand parser: the files are ours and simple).
fn section_lines<'a>(text: &'a str, section: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
    let mut inside = false;
    text.lines().filter_map(move |line| {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == format!("[{section}]");
            return None;
        }
        let (k, v) = line.split_once('=')?;
        inside.then(|| (k.trim(), v.trim()))
    })
}

/// `path = "..."` inside an inline table value.
fn path_value(v: &str) -> Option<&str> {
    let rest = v
        .split("path")
        .nth(1)?
        .trim_start()
        .strip_prefix('=')?
        .trim_start();
    rest.strip_prefix('"')?.split('"').next()
}

/// The `sekator-*` entries of `[dependencies]`, with their path when given there.
fn sekator_deps(dir: &Path) -> Vec<(String, Option<PathBuf>)> {
    let text = read_manifest(dir);
    let deps = section_lines(&text, "dependencies")
        .filter(|(k, _)| k.starts_with("sekator-"))
        .map(|(k, v)| (k.to_string(), path_value(v).map(|p| dir.join(p))))
        .collect();
    deps
}

/// `[workspace.dependencies]` path entries of the nearest workspace root above `dir`.
fn workspace_paths(dir: &Path) -> BTreeMap<String, PathBuf> {
    for root in dir.ancestors() {
        let text = read_manifest(root);
        if text.contains("[workspace]") {
            let paths = section_lines(&text, "workspace.dependencies")
                .filter_map(|(k, v)| Some((k.to_string(), root.join(path_value(v)?))))
                .collect();
            return paths;
        }
    }
    BTreeMap::new()
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Every file under `path` in a fixed order, Markdown and Python caches left out.
fn collect(path: &Path, out: &mut Vec<PathBuf>) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    // Python's byte-code caches appear beside `crates/model/python/` once anyone imports it
    if name == "__pycache__" || name.ends_with(".pyc") {
        return;
    }
    if path.is_dir() {
        for e in sorted_entries(path) {
            collect(&e, out);
        }
    } else if path.extension().is_none_or(|e| e != "md") {
        out.push(path.to_path_buf());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// A workspace of two crates: `a` depends on `b`; `c` stands alone.
    fn workspace() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(
            &r.join("Cargo.toml"),
            "[workspace]\nmembers = []\n\n[workspace.dependencies]\nsekator-b = { path = \"crates/b\" }\nserde = \"1\"\n",
        );
        write(
            &r.join("crates/a/Cargo.toml"),
            "[package]\nname = \"sekator-a\"\n\n[dependencies]\nsekator-b = { workspace = true }\n\n[dev-dependencies]\nsekator-c = { path = \"../c\" }\n",
        );
        write(&r.join("crates/a/src/lib.rs"), "// a\n");
        write(&r.join("crates/a/README.md"), "a\n");
        write(&r.join("crates/a/tests/t.rs"), "// test\n");
        write(
            &r.join("crates/b/Cargo.toml"),
            "[package]\nname = \"sekator-b\"\n",
        );
        write(&r.join("crates/b/src/lib.rs"), "// b\n");
        write(
            &r.join("crates/c/Cargo.toml"),
            "[package]\nname = \"sekator-c\"\n",
        );
        write(&r.join("crates/c/src/lib.rs"), "// c\n");
        t
    }

    #[test]
    fn code_of_the_crate_and_its_dependencies_changes_the_fingerprint() {
        let t = workspace();
        let a = t.path().join("crates/a");
        let (before, _) = fingerprint(&a);
        assert_eq!(before.len(), 16);
        write(&t.path().join("crates/b/src/lib.rs"), "// b, fixed\n");
        let (after_dep, _) = fingerprint(&a);
        assert_ne!(before, after_dep);
        write(&a.join("src/lib.rs"), "// a, fixed\n");
        assert_ne!(after_dep, fingerprint(&a).0);
    }

    #[test]
    fn docs_tests_and_unrelated_crates_do_not() {
        let t = workspace();
        let a = t.path().join("crates/a");
        let (before, watched) = fingerprint(&a);
        assert!(watched.iter().all(|p| !p.ends_with("tests")));
        write(&a.join("README.md"), "a, longer\n");
        write(&a.join("tests/t.rs"), "// another test\n");
        write(&a.join("src/__pycache__/m.cpython-312.pyc"), "cache");
        write(&t.path().join("crates/c/src/lib.rs"), "// c, changed\n");
        assert_eq!(before, fingerprint(&a).0);
    }
}
