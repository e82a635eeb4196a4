//! Whether the token holds the scopes agentq needs, checked without a
//! repository and without writing anything.
//!
//! Forgejo (and Gitea) check a token's scope on the route group, before the
//! route's repository is looked up (`routers/api/v1/api.go`:
//! `tokenRequiresScopes` on the `/repos` groups, `repoAssignment` inside
//! them), and answer a missing one with 403 "token does not have at least one
//! of required scope(s): [write:issue]". So each write scope is probed with a
//! write to a repository that cannot exist ([`PROBE_OWNER`] is not a valid
//! user name): 403 naming the scope means it is missing, 404 means the token
//! has it and the forge went on to look the repository up (and found
//! nothing, so nothing was written). `read:user` is probed with `GET /user`.
//!
//! What this cannot tell: whether the token's user may write the job's
//! repositories (membership, branch protection), and whether a `public-only`
//! token will be refused a private repository (that is checked after the
//! repository is found). Those show on the job, in `forge_error`.

use reqwest::Method;

use super::{ForgeClient, ForgeError};

/// An owner no forge user can have (`~` is not allowed in a user name).
pub const PROBE_OWNER: &str = "agentq~scope-probe";

/// The scopes agentq needs, and what for.
pub const NEEDED_SCOPES: [(&str, &str); 3] = [
    (
        "read:user",
        "GET /user: who the token is, to find agentq's own comments and tracked times",
    ),
    (
        "write:issue",
        "read the issue, post the outcome comment, track time",
    ),
    (
        "write:repository",
        "push the agent branch, open the pull request, set the commit status",
    ),
];

/// A scope the token lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingScope {
    /// The scope (`write:issue`).
    pub scope: &'static str,
    /// What agentq needs it for.
    pub needed_for: &'static str,
    /// What the forge answered.
    pub message: String,
}

/// Whether a refusal is the forge saying the token lacks a scope.
pub fn is_scope_refusal(e: &ForgeError) -> bool {
    matches!(e, ForgeError::Client { status: 403, message, .. } if message.contains("required scope"))
}

impl ForgeClient {
    /// Checks that the token holds every scope of [`NEEDED_SCOPES`] (see the
    /// module docs); the ones it lacks, in that order.
    ///
    /// # Errors
    /// The forge refused the token (401), could not be reached, or answered
    /// a probe with something that tells neither way.
    pub async fn missing_scopes(&self) -> Result<Vec<MissingScope>, ForgeError> {
        let mut missing = Vec::new();
        for (scope, needed_for) in NEEDED_SCOPES {
            let probe = match scope {
                "read:user" => self.probe(Method::GET, &["user"]).await,
                "write:issue" => {
                    self.probe(
                        Method::POST,
                        &["repos", PROBE_OWNER, "probe", "issues", "1", "comments"],
                    )
                    .await
                }
                _ => {
                    self.probe(
                        Method::POST,
                        &["repos", PROBE_OWNER, "probe", "statuses", "0"],
                    )
                    .await
                }
            };
            match probe {
                // A success or a 404: the scope is held.
                Ok(_) => {}
                Err(e) if is_scope_refusal(&e) => missing.push(MissingScope {
                    scope,
                    needed_for,
                    message: e.to_string(),
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(missing)
    }
}
