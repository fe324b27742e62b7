//! hearth: a local-first home gateway.
//!
//! The library holds every part of the daemon; `main.rs` only calls
//! [`cli::main`]. See ARCHITECTURE.md for the map, the invariants and the
//! arrows allowed between these folders.

pub mod accounts;
pub mod app;
pub mod broker;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod dns;
pub mod exit;
pub mod home;
pub mod matter;
pub mod net;
pub mod relay;
pub mod safety;
pub mod sim;
pub mod store;
pub mod supervisor;
pub mod web;

/// The arrows between the folders: what each may name with `crate::`.
/// ARCHITECTURE.md shows the same table and says why; the test below fails
/// on any other arrow, on a folder missing from the table, and on a circle.
#[cfg(test)]
mod arrows {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// What `app` starts: every folder but `cli` and `sim`.
    const PARTS: &[&str] = &[
        "config",
        "web",
        "safety",
        "relay",
        "discovery",
        "dns",
        "matter",
        "home",
        "broker",
        "accounts",
        "store",
        "net",
        "supervisor",
        "exit",
    ];
    /// Any folder at all: only for `cli`, which no folder may name.
    const ANY: &[&str] = &["*"];

    const ALLOWED: &[(&str, &[&str])] = &[
        ("exit", &[]),
        ("supervisor", &[]),
        ("store", &["exit"]),
        ("net", &["store", "supervisor", "exit"]),
        ("accounts", &["store", "net", "exit"]),
        ("broker", &["store", "net", "supervisor", "exit"]),
        ("home", &["broker", "store", "net", "supervisor", "exit"]),
        ("discovery", &["home", "store", "net", "supervisor", "exit"]),
        ("dns", &["home", "store", "net", "supervisor", "exit"]),
        (
            "matter",
            &["home", "discovery", "store", "net", "supervisor", "exit"],
        ),
        (
            "relay",
            &["accounts", "home", "broker", "store", "net", "supervisor", "exit"],
        ),
        (
            "safety",
            &[
                "accounts",
                "home",
                "dns",
                "matter",
                "relay",
                "broker",
                "store",
                "net",
                "supervisor",
                "exit",
            ],
        ),
        (
            "web",
            &[
                "accounts",
                "home",
                "discovery",
                "dns",
                "matter",
                "relay",
                "safety",
                "broker",
                "store",
                "net",
                "supervisor",
                "exit",
            ],
        ),
        (
            "config",
            &[
                "broker",
                "discovery",
                "dns",
                "matter",
                "relay",
                "web",
                "store",
                "net",
                "exit",
            ],
        ),
        ("sim", &["home", "broker", "store", "exit"]),
        ("app", PARTS),
        ("cli", ANY),
    ];

    /// Every `.rs` file under `dir`, with the top-level module it belongs to.
    fn files(dir: &Path, top: Option<&str>, out: &mut Vec<(String, std::path::PathBuf)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if path.is_dir() {
                files(&path, Some(top.unwrap_or(&name)), out);
            } else if let Some(stem) = name.strip_suffix(".rs") {
                out.push((top.unwrap_or(stem).to_owned(), path));
            }
        }
    }

    /// The modules a file names after `prefix` (`crate::x`, `super::x`)
    /// anywhere outside a comment, in `use` lines and in paths alike.
    fn named(source: &str, prefix: &str) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for (n, line) in source.lines().enumerate() {
            let code = line.split("//").next().unwrap();
            for (i, _) in code.match_indices(prefix) {
                let rest = &code[i + prefix.len()..];
                let module: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                out.push((
                    n + 1,
                    if module.is_empty() {
                        rest.chars().take(1).collect()
                    } else {
                        module
                    },
                ));
            }
        }
        out
    }

    #[test]
    fn every_arrow_is_allowed() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
            .iter()
            .map(|(from, to)| (*from, to.iter().copied().collect()))
            .collect();
        let mut all = Vec::new();
        files(&src, None, &mut all);
        let mut wrong = Vec::new();
        for (from, path) in &all {
            if from == "lib" || from == "main" {
                continue;
            }
            let Some(may) = allowed.get(from.as_str()) else {
                wrong.push(format!(
                    "{}: the folder `{from}` is not in the table",
                    path.display()
                ));
                continue;
            };
            let source = std::fs::read_to_string(path).unwrap();
            for (line, to) in named(&source, "crate::") {
                if to == *from {
                    continue;
                }
                if to == "{" {
                    wrong.push(format!(
                        "{}:{line}: name each folder on its own `use crate::` line",
                        path.display()
                    ));
                } else if !may.contains(to.as_str()) && !may.contains("*") {
                    wrong.push(format!(
                        "{}:{line}: `{from}` may not use `crate::{to}`",
                        path.display()
                    ));
                }
            }
            if source.contains("super::super") {
                wrong.push(format!(
                    "{}: `super::super` hides an arrow; write `crate::`",
                    path.display()
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "arrows against ARCHITECTURE.md:\n{}",
            wrong.join("\n")
        );
    }

    /// Inside `home`, the same rule file by file: vendor terms at the
    /// bottom, Home Assistant at the top.
    const HOME: &[(&str, &[&str])] = &[
        ("vendor", &[]),
        ("live", &["vendor"]),
        ("devices", &["vendor", "live"]),
        ("canonical", &["vendor", "live", "devices"]),
        ("homeassistant", &["vendor", "live", "devices", "canonical"]),
    ];

    #[test]
    fn every_arrow_inside_home_is_allowed() {
        let home = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/home");
        let mut wrong = Vec::new();
        for (file, may) in HOME {
            let path = home.join(format!("{file}.rs"));
            let source = std::fs::read_to_string(&path).unwrap();
            for prefix in ["crate::home::", "super::"] {
                for (line, to) in named(&source, prefix) {
                    // `super::` in a file's own test module is the file.
                    if to == *file || !HOME.iter().any(|(f, _)| *f == to) {
                        continue;
                    }
                    if !may.contains(&to.as_str()) {
                        wrong.push(format!(
                            "{}:{line}: `home::{file}` may not use `home::{to}`",
                            path.display()
                        ));
                    }
                }
            }
        }
        // Each row names only rows above it, so the table has no circle.
        for (i, (file, may)) in HOME.iter().enumerate() {
            for to in *may {
                assert!(
                    HOME[..i].iter().any(|(f, _)| f == to),
                    "`{file}` names `{to}`, which is not above it"
                );
            }
        }
        let files = std::fs::read_dir(&home).unwrap().count();
        assert_eq!(
            files,
            HOME.len() + 1,
            "every file in home/ (and mod.rs) has a row"
        );
        assert!(
            wrong.is_empty(),
            "arrows against ARCHITECTURE.md:\n{}",
            wrong.join("\n")
        );
    }

    #[test]
    fn the_table_has_no_circle() {
        // A folder that may use any other must be named by none.
        for (from, _) in ALLOWED.iter().filter(|(_, to)| to.contains(&"*")) {
            assert!(
                !ALLOWED.iter().any(|(_, t)| t.contains(from)),
                "`{from}` may use anything, so nothing may name it"
            );
        }
        // Kahn's algorithm: repeatedly remove a folder whose arrows all
        // point at folders already removed.
        let mut left: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
            .iter()
            .filter(|(_, to)| !to.contains(&"*"))
            .map(|(from, to)| (*from, to.iter().copied().collect()))
            .collect();
        for to in left.values() {
            for t in to {
                assert!(left.contains_key(t), "`{t}` is named but has no row");
            }
        }
        while !left.is_empty() {
            let done: Vec<&str> = left
                .iter()
                .filter(|(_, to)| to.is_empty())
                .map(|(f, _)| *f)
                .collect();
            assert!(
                !done.is_empty(),
                "the arrows make a circle among {:?}",
                left.keys()
            );
            for d in &done {
                left.remove(d);
            }
            for to in left.values_mut() {
                for d in &done {
                    to.remove(d);
                }
            }
        }
    }

    #[test]
    fn a_wrong_arrow_is_caught() {
        let named = named(
            "use crate::web::api;\n// crate::cli in a comment\nlet x = crate::store::open();\n",
            "crate::",
        );
        assert_eq!(named, vec![(1, "web".to_owned()), (3, "store".to_owned())]);
    }
}
