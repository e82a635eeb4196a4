//! The configuration ([`agentq_domain::config`], re-exported), loaded from its
//! file and the environment ([`ConfigFile`]), and the ids agents run as on
//! this host ([`AgentRunIds`]).

use std::path::PathBuf;

pub use agentq_domain::config::*;

/// The configuration file and the environment.
pub trait ConfigFile: Sized {
    /// The file [`ConfigFile::load`] reads: `path`, else `AGENTQ_CONFIG`, else
    /// `./agentq.toml` if it exists; `None`: defaults and environment only.
    fn file(path: Option<PathBuf>) -> Option<PathBuf>;

    /// Loads `path` (or `AGENTQ_CONFIG`, or `./agentq.toml` if it exists), then
    /// applies environment overrides.
    ///
    /// # Errors
    /// A named file that cannot be read or parsed, or a bad environment value.
    fn load(path: Option<PathBuf>) -> Result<Self, ConfigError>;
}

impl ConfigFile for Config {
    fn file(path: Option<PathBuf>) -> Option<PathBuf> {
        path.or_else(|| {
            std::env::var_os("AGENTQ_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .or_else(|| {
            let p = PathBuf::from("agentq.toml");
            p.exists().then_some(p)
        })
    }

    fn load(path: Option<PathBuf>) -> Result<Self, ConfigError> {
        let mut cfg = match Self::file(path) {
            Some(p) => {
                let text =
                    std::fs::read_to_string(&p).map_err(|e| ConfigError::Read(p.clone(), e))?;
                Self::from_toml(&text).map_err(|e| ConfigError::Parse(p, e))?
            }
            None => Self::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.apply_floors();
        let home = std::env::var_os("HOME");
        cfg.workspace_root = expand_home(&cfg.workspace_root, home.as_deref());
        if let Some(t) = &cfg.templates_dir {
            cfg.templates_dir = Some(expand_home(t, home.as_deref()));
        }
        Ok(cfg)
    }
}

/// The ids agents run as on this host.
pub trait AgentRunIds {
    /// `uid:gid` agents run as: `docker.agent_user` when this process is root
    /// (it gives them the working tree), else this process's own ids
    /// ([`Config::agent_run_ids_as`]).
    fn agent_run_ids(&self) -> (u32, u32);
}

impl AgentRunIds for Config {
    fn agent_run_ids(&self) -> (u32, u32) {
        self.agent_run_ids_as(crate::fsutil::current_ids())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A named file is read and parsed; one that cannot be read or parsed is
    /// an error naming it.
    #[test]
    fn a_named_file_is_loaded_and_a_bad_one_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agentq.toml");
        std::fs::write(&p, "namespace = \"from-file\"\n").unwrap();
        assert_eq!(
            Config::load(Some(p.clone())).unwrap().namespace,
            "from-file"
        );
        std::fs::write(&p, "nope = 1\n").unwrap();
        let e = Config::load(Some(p.clone())).unwrap_err();
        assert!(matches!(e, ConfigError::Parse(ref f, _) if *f == p), "{e}");
        let gone = dir.path().join("gone.toml");
        let e = Config::load(Some(gone.clone())).unwrap_err();
        assert!(
            matches!(e, ConfigError::Read(ref f, _) if *f == gone),
            "{e}"
        );
    }
}
