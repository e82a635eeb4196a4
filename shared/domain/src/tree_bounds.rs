//! The bounds of a working tree the agent made (bytes, entries, the time a
//! walk may take) and how a tree is over them. The walk itself is
//! `agentq_shared::fsutil::trees_over`'s.

/// The bounds of a working tree the agent made: bytes, entries (inodes) and
/// the time a walk may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeBounds {
    /// Most bytes of regular files (each inode once); `None`: no byte limit.
    pub max_bytes: Option<u64>,
    /// Most entries of any kind (files, directories, links, FIFOs…); `None`:
    /// no count limit.
    pub max_entries: Option<u64>,
    /// Longest the walk may take: a tree that cannot be walked in it is over.
    pub budget: std::time::Duration,
}

impl TreeBounds {
    /// Whether there is anything to check.
    pub fn any(&self) -> bool {
        self.max_bytes.is_some() || self.max_entries.is_some()
    }
}

/// How a working tree is over its bounds. Each is the agent's doing: a tree the
/// worker cannot see whole (too many entries to walk in time, a directory it
/// cannot read) counts as over, so it can never hide what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeOver {
    /// More bytes than the limit (at least this many, when the walk stopped).
    Bytes {
        /// Bytes counted when the walk stopped.
        at_least: u64,
        /// The limit.
        limit: u64,
    },
    /// More entries than the limit.
    Entries {
        /// Entries counted when the walk stopped.
        at_least: u64,
        /// The limit.
        limit: u64,
    },
    /// A directory (path relative to the tree) that cannot be read.
    Unreadable(String),
    /// The walk did not finish within its budget.
    TooSlow {
        /// The budget.
        budget: std::time::Duration,
        /// Entries counted by then.
        entries: u64,
    },
}

impl std::fmt::Display for TreeOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gib = |b: u64| b as f64 / (1024.0 * 1024.0 * 1024.0);
        match self {
            TreeOver::Bytes { at_least, limit } => write!(
                f,
                "workspace grew to {:.2} GiB ({at_least} bytes), over the limit of {:.2} GiB ({limit} bytes)",
                gib(*at_least),
                gib(*limit)
            ),
            TreeOver::Entries { at_least, limit } => write!(
                f,
                "workspace grew to {at_least} files, over the limit of {limit} files (workspace_limit_files)"
            ),
            TreeOver::Unreadable(dir) => write!(
                f,
                "workspace is over the limit: the directory {dir:?} cannot be read, so its size cannot be checked"
            ),
            TreeOver::TooSlow { budget, entries } => write!(
                f,
                "workspace is over the limit: its size could not be checked within {budget:?} ({entries} entries seen)"
            ),
        }
    }
}
