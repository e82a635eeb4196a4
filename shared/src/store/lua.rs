//! The store's Lua: one file per script in `store/lua/`, built in with
//! `include_str!`.
//!
//! Each file starts with a header that names its `KEYS` and `ARGV`, one per
//! line. A line `--- @include "name"` stands for the file `name.lua` (as in
//! BullMQ's commands). [`source`] puts the included files in, each once per
//! script, at its first include; an include inside an included file is put in
//! too. The include `enums` is not a file: it is made from the Rust enums
//! ([`enums`]), so no script spells a state out; nor is `keys`: it is made
//! from [`Keys`](crate::keys::Keys) ([`keys_lua`]), so a script builds key
//! names with the same definitions as Rust (`local K = keys_for(NS)`, then
//! `K.lane(pool, model)`).
//!
//! A script is a file that some Rust code runs; a snippet is a file that
//! scripts include (`push`, `open`, `park`, `redis_now`, `bulk`).

use std::{collections::HashSet, sync::LazyLock};

use crate::{record::RERUN_CLEARED, status::JobState};

/// Every Lua file, by name.
const FILES: &[(&str, &str)] = &[
    ("acquire", include_str!("lua/acquire.lua")),
    ("batch_seal", include_str!("lua/batch_seal.lua")),
    ("bulk", include_str!("lua/bulk.lua")),
    ("cancel_many", include_str!("lua/cancel_many.lua")),
    ("claim", include_str!("lua/claim.lua")),
    ("due", include_str!("lua/due.lua")),
    ("finish", include_str!("lua/finish.lua")),
    ("fleet", include_str!("lua/fleet.lua")),
    ("flow_add", include_str!("lua/flow_add.lua")),
    ("flow_end", include_str!("lua/flow_end.lua")),
    ("free_workspaces", include_str!("lua/free_workspaces.lua")),
    ("job_event", include_str!("lua/job_event.lua")),
    ("log_fenced", include_str!("lua/log_fenced.lua")),
    ("log_tail_info", include_str!("lua/log_tail_info.lua")),
    ("move", include_str!("lua/move.lua")),
    ("notify_hand", include_str!("lua/notify_hand.lua")),
    ("notify_lease", include_str!("lua/notify_lease.lua")),
    ("notify_settle", include_str!("lua/notify_settle.lua")),
    ("open", include_str!("lua/open.lua")),
    ("park", include_str!("lua/park.lua")),
    ("pool_event", include_str!("lua/pool_event.lua")),
    ("pool_outcome", include_str!("lua/pool_outcome.lua")),
    ("purge_many", include_str!("lua/purge_many.lua")),
    ("push", include_str!("lua/push.lua")),
    ("quota_pause", include_str!("lua/quota_pause.lua")),
    ("redis_now", include_str!("lua/redis_now.lua")),
    (
        "release_scheduled",
        include_str!("lua/release_scheduled.lua"),
    ),
    ("rescue", include_str!("lua/rescue.lua")),
    ("retry_many", include_str!("lua/retry_many.lua")),
    (
        "run_lease_release",
        include_str!("lua/run_lease_release.lua"),
    ),
    ("run_lease_renew", include_str!("lua/run_lease_renew.lua")),
    ("schedule_tick", include_str!("lua/schedule_tick.lua")),
    ("set_fenced", include_str!("lua/set_fenced.lua")),
    ("slot_holds", include_str!("lua/slot_holds.lua")),
    ("slot_renew", include_str!("lua/slot_renew.lua")),
    ("timer_add", include_str!("lua/timer_add.lua")),
    ("unique_key", include_str!("lua/unique_key.lua")),
    ("wake", include_str!("lua/wake.lua")),
    ("ws_give_back", include_str!("lua/ws_give_back.lua")),
    ("ws_renew", include_str!("lua/ws_renew.lua")),
    ("ws_take", include_str!("lua/ws_take.lua")),
    ("ws_try_take", include_str!("lua/ws_try_take.lua")),
];

/// The files scripts include and Rust never runs on their own.
pub const SNIPPETS: &[&str] = &[
    "bulk",
    "notify_hand",
    "open",
    "park",
    "push",
    "redis_now",
    "flow_end",
    "unique_key",
    "timer_add",
];

/// The name of the include made from the Rust enums.
pub const ENUMS: &str = "enums";

/// The name of the include made from [`Keys`](crate::keys::Keys).
pub const KEYS: &str = "keys";

/// What starts an include line.
const INCLUDE: &str = "--- @include \"";

/// The names of every Lua file (scripts and snippets).
pub fn names() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(name, _)| *name)
}

/// The text of file `name` as written, `None` if there is no such file.
pub fn file(name: &str) -> Option<&'static str> {
    FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

/// Script `name` with its includes put in.
///
/// # Panics
/// If `name`, or a file it includes, is missing (a unit test checks every
/// file).
pub fn source(name: &str) -> String {
    try_source(name).unwrap_or_else(|e| panic!("lua script {name}: {e}"))
}

/// Script `name`, ready to run.
///
/// # Panics
/// As [`source`].
pub fn script(name: &str) -> redis::Script {
    redis::Script::new(&source(name))
}

/// Script `name` with its includes put in, or which include is missing.
///
/// # Errors
/// The name of a file that does not exist, or a malformed include line.
pub fn try_source(name: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut seen = HashSet::new();
    expand(name, &mut out, &mut seen)?;
    Ok(out)
}

fn expand(name: &str, out: &mut String, seen: &mut HashSet<String>) -> Result<(), String> {
    if !seen.insert(name.to_string()) {
        return Ok(());
    }
    if name == ENUMS {
        out.push_str(&ENUMS_LUA);
        return Ok(());
    }
    if name == KEYS {
        out.push_str(&KEYS_LUA);
        return Ok(());
    }
    let text = file(name).ok_or_else(|| format!("no file lua/{name}.lua"))?;
    for line in text.lines() {
        match line.strip_prefix(INCLUDE) {
            Some(rest) => {
                let inc = rest
                    .strip_suffix('"')
                    .ok_or_else(|| format!("{name}.lua: bad include line `{line}`"))?;
                expand(inc, out, seen).map_err(|e| format!("{name}.lua includes {inc}: {e}"))?;
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(())
}

static ENUMS_LUA: LazyLock<String> = LazyLock::new(enums);
static KEYS_LUA: LazyLock<String> = LazyLock::new(keys_lua);

/// A key name the scripts build: its name in the Lua table `K`, how many
/// arguments it takes, and the Rust that builds it.
#[derive(Debug, Clone, Copy)]
pub struct KeyFn {
    /// Its name in `K`.
    pub name: &'static str,
    /// How many arguments (strings) it takes: 0, 1 or 2.
    pub arity: usize,
    /// The key, as Rust builds it.
    pub build: fn(&crate::keys::Keys, &[&str]) -> String,
}

/// Stands for a number argument while a key is turned into Lua (see
/// [`keys_lua`]): no key has it otherwise.
const NUMBER_ARG: i64 = 7_007_007_007_007;

/// Every key name the scripts build, one definition each ([`crate::keys::Keys`]).
pub const KEY_FNS: &[KeyFn] = &[
    KeyFn {
        name: "backoff",
        arity: 1,
        build: |k, a| k.backoff(a[0]),
    },
    KeyFn {
        name: "deliver",
        arity: 0,
        build: |k, _| k.deliver(),
    },
    KeyFn {
        name: "fleet_paused",
        arity: 0,
        build: |k, _| k.fleet_paused(),
    },
    KeyFn {
        name: "fleet_paused_all",
        arity: 0,
        build: |k, _| k.fleet_paused_all(),
    },
    KeyFn {
        name: "moved",
        arity: 1,
        build: |k, a| k.moved(a[0]),
    },
    KeyFn {
        name: "lane",
        arity: 2,
        build: |k, a| k.lane(a[0], a[1]),
    },
    KeyFn {
        name: "history",
        arity: 1,
        build: |k, a| k.history(a[0]),
    },
    KeyFn {
        name: "scheduled",
        arity: 0,
        build: |k, _| k.scheduled(),
    },
    KeyFn {
        name: "schedule_tick",
        arity: 1,
        build: |k, a| k.schedule_tick(a[0]),
    },
    KeyFn {
        name: "lanes",
        arity: 1,
        build: |k, a| k.lanes(a[0]),
    },
    KeyFn {
        name: "limit",
        arity: 1,
        build: |k, a| k.limit(a[0]),
    },
    KeyFn {
        name: "limit_model",
        arity: 2,
        build: |k, a| k.limit_model(a[0], a[1]),
    },
    KeyFn {
        name: "fresh",
        arity: 0,
        build: |k, _| k.fresh(),
    },
    KeyFn {
        name: "job",
        arity: 1,
        build: |k, a| k.job(a[0]),
    },
    KeyFn {
        name: "events",
        arity: 0,
        build: |k, _| k.events(),
    },
    KeyFn {
        name: "notify",
        arity: 1,
        build: |k, a| k.notify(a[0]),
    },
    KeyFn {
        name: "order",
        arity: 0,
        build: |k, _| k.order(),
    },
    KeyFn {
        name: "state",
        arity: 1,
        build: |k, a| k.state(a[0]),
    },
    KeyFn {
        name: "pools",
        arity: 0,
        build: |k, _| k.pools(),
    },
    KeyFn {
        name: "rate",
        arity: 1,
        build: |k, a| k.rate(a[0]),
    },
    KeyFn {
        name: "servers",
        arity: 0,
        build: |k, _| k.servers(),
    },
    KeyFn {
        name: "serves",
        arity: 1,
        build: |k, a| k.serves(a[0]),
    },
    // The day is a number on Redis's clock: the Lua takes it as a string.
    KeyFn {
        name: "starts",
        arity: 2,
        build: |k, a| {
            k.starts(a[0], NUMBER_ARG)
                .replace(&NUMBER_ARG.to_string(), a[1])
        },
    },
    KeyFn {
        name: "timers",
        arity: 0,
        build: |k, _| k.timers(),
    },
    KeyFn {
        name: "timer_wake",
        arity: 0,
        build: |k, _| k.timer_wake(),
    },
    KeyFn {
        name: "transit",
        arity: 0,
        build: |k, _| k.transit(),
    },
    KeyFn {
        name: "queued_workspaces",
        arity: 0,
        build: |k, _| k.queued_workspaces(),
    },
    KeyFn {
        name: "wake",
        arity: 0,
        build: |k, _| k.wake(),
    },
    KeyFn {
        name: "workspace_lease",
        arity: 1,
        build: |k, a| k.workspace_lease(a[0]),
    },
    KeyFn {
        name: "workspace_waiters",
        arity: 1,
        build: |k, a| k.workspace_waiters(a[0]),
    },
    KeyFn {
        name: "history",
        arity: 1,
        build: |k, a| k.history(a[0]),
    },
    KeyFn {
        name: "dependants",
        arity: 1,
        build: |k, a| k.dependants(a[0]),
    },
    KeyFn {
        name: "batch",
        arity: 1,
        build: |k, a| k.batch(a[0]),
    },
    KeyFn {
        name: "batch_jobs",
        arity: 1,
        build: |k, a| k.batch_jobs(a[0]),
    },
    KeyFn {
        name: "batch_done",
        arity: 1,
        build: |k, a| k.batch_done(a[0]),
    },
];

/// The `keys` include: `keys_for(ns)` returns a table `K` of functions, one
/// per [`KEY_FNS`] entry, each building its key name as Rust does: each is
/// made by building the key in Rust with markers for the namespace and the
/// arguments, then turning the markers into Lua variables.
pub fn keys_lua() -> String {
    const NS: &str = "\u{1}";
    const ARGS: [&str; 2] = ["\u{2}", "\u{3}"];
    let keys = crate::keys::Keys::new(NS);
    let mut out = String::from("local function keys_for(ns)\n  local K = {}\n");
    for f in KEY_FNS {
        let params = ["a", "b"][..f.arity].join(", ");
        let built = (f.build)(&keys, &ARGS[..f.arity]);
        let mut parts: Vec<String> = Vec::new();
        let mut lit = String::new();
        for c in built.chars() {
            let var = match c {
                '\u{1}' => Some("ns"),
                '\u{2}' => Some("a"),
                '\u{3}' => Some("b"),
                _ => None,
            };
            match var {
                Some(v) => {
                    if !lit.is_empty() {
                        parts.push(format!("'{}'", std::mem::take(&mut lit)));
                    }
                    parts.push(v.to_string());
                }
                None => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(format!("'{lit}'"));
        }
        out.push_str(&format!(
            "  K.{} = function({params}) return {} end\n",
            f.name,
            parts.join(" .. ")
        ));
    }
    out.push_str("  return K\nend\n");
    out
}

/// The `enums` include: the tables `ST` and `WR` (states and wait reasons by
/// their Rust names), `FINAL`, `ACTIVE` and `PARKED` (sets of states), and
/// `RERUN_CLEARED` (the arguments of an `HSET` that empties
/// [`RERUN_CLEARED`]).
pub fn enums() -> String {
    [
        states_lua(),
        wait_reasons_lua(),
        final_states_lua(),
        state_set_lua("ACTIVE", crate::status::ACTIVE_STATES),
        state_set_lua("PARKED", crate::status::PARKED_STATES),
        rerun_cleared_lua(),
    ]
    .concat()
}

/// Lua: `FINAL[state]` is true for the final states (from
/// [`JobState::is_final`]).
fn final_states_lua() -> String {
    let finals: Vec<JobState> = crate::status::ALL_STATES
        .iter()
        .copied()
        .filter(|s| s.is_final())
        .collect();
    state_set_lua("FINAL", &finals)
}

/// Lua: `local {table} = {['state'] = true, ...}` for `states`.
fn state_set_lua(table: &str, states: &[JobState]) -> String {
    let names: Vec<String> = states
        .iter()
        .map(|s| format!("['{}'] = true", s.as_str()))
        .collect();
    format!("local {table} = {{{}}}\n", names.join(", "))
}

/// Lua: `RERUN_CLEARED`, the arguments of an `HSET` that empties
/// [`RERUN_CLEARED`] (one list for Rust and Lua).
fn rerun_cleared_lua() -> String {
    let args: Vec<String> = RERUN_CLEARED.iter().map(|f| format!("'{f}', ''")).collect();
    format!("local RERUN_CLEARED = {{{}}}\n", args.join(", "))
}

/// Lua: `WR.Orphaned`, `WR.Lost`, … hold the wait reasons' names, keyed by
/// their Rust variant names (one source: [`WaitReason`](crate::status::WaitReason)).
pub(crate) fn wait_reasons_lua() -> String {
    names_lua("WR", crate::status::WAIT_REASONS, |r| r.as_str())
}

/// Lua: `ST.Queued`, `ST.TimedOut`, … hold the states' names, keyed by their
/// Rust variant names (one source: [`JobState`]).
pub(crate) fn states_lua() -> String {
    names_lua("ST", crate::status::ALL_STATES, |s| s.as_str())
}

/// Lua: a table `table` of each variant's stored name, keyed by its Rust name.
fn names_lua<T: std::fmt::Debug>(table: &str, all: &[T], name: fn(&T) -> &'static str) -> String {
    let names: Vec<String> = all
        .iter()
        .map(|v| format!("{v:?} = '{}'", name(v)))
        .collect();
    format!("local {table} = {{{}}}\n", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_and_its_includes_resolve() {
        for name in names() {
            let src = try_source(name).unwrap_or_else(|e| panic!("{e}"));
            assert!(!src.contains(INCLUDE), "{name}: an include is left");
        }
    }

    #[test]
    fn a_missing_include_is_named() {
        let mut seen = HashSet::new();
        let err = expand("no_such_file", &mut String::new(), &mut seen).unwrap_err();
        assert!(err.contains("lua/no_such_file.lua"), "{err}");
    }

    #[test]
    fn every_file_in_the_folder_is_listed_and_every_listed_file_exists() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/lua");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let listed: Vec<String> = names().map(|n| format!("{n}.lua")).collect();
        assert_eq!(
            on_disk, listed,
            "FILES must list every file in {dir:?}, sorted"
        );
    }

    #[test]
    fn every_file_names_its_keys_and_argv_in_its_header() {
        for name in names() {
            let header: Vec<&str> = file(name)
                .unwrap()
                .lines()
                .take_while(|l| l.starts_with("--"))
                .collect();
            assert!(
                header.first().is_some_and(|l| l.starts_with("-- ")),
                "{name}: no header"
            );
            for what in ["KEYS", "ARGV"] {
                assert!(
                    header.iter().any(|l| l.starts_with(&format!("-- {what}"))),
                    "{name}: its header names no {what}"
                );
            }
        }
    }

    #[test]
    fn an_included_file_is_put_in_once() {
        // `move` includes `park`, which includes `open`.
        let src = source("move");
        assert_eq!(src.matches("local function open(job)").count(), 1);
        assert_eq!(src.matches("local function park_job(").count(), 1);
        assert_eq!(src.matches("local ST = ").count(), 1);
    }

    #[test]
    fn park_comes_after_the_namespace_it_needs() {
        for name in [
            "move",
            "rescue",
            "free_workspaces",
            "ws_give_back",
            "release_scheduled",
        ] {
            let src = source(name);
            let ns = src.find("local NS").expect("NS");
            let park = src.find("local function park_job(").expect("park");
            assert!(ns < park, "{name}: park is put in before NS");
        }
    }

    #[test]
    fn snippets_are_files() {
        for s in SNIPPETS {
            assert!(file(s).is_some(), "{s}");
        }
    }

    #[test]
    fn enums_hold_every_table_scripts_use() {
        let e = enums();
        for t in ["ST", "WR", "FINAL", "ACTIVE", "PARKED", "RERUN_CLEARED"] {
            assert!(e.contains(&format!("local {t} = {{")), "{t}: {e}");
        }
        assert!(e.contains("['running'] = true"), "{e}");
    }
}
