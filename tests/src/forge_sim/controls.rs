//! [`ForgeSim`]: starting the sim, and what a test sets up, breaks and reads.

use super::*;

/// A simulated Forgejo on a loopback port, stopped on drop.
pub struct ForgeSim {
    pub(super) shared: Arc<Shared>,
    pub(super) addr: SocketAddr,
    pub(super) shutdown: Option<oneshot::Sender<()>>,
}

impl ForgeSim {
    /// Starts a sim where `token` is [`SIM_USER`]'s, serving the bare repositories
    /// under `git_root` (`{git_root}/{owner}/{repo}.git`) over HTTP. Binds
    /// `127.0.0.1:0` and serves on a tokio task of the current runtime.
    pub async fn start(token: &str, git_root: PathBuf) -> ForgeSim {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("forge sim: cannot bind a loopback port");
        let addr = listener.local_addr().expect("forge sim: local address");
        let state = SimState {
            users: vec![SimUser {
                id: SIM_USER_ID,
                login: SIM_USER.into(),
                token: token.to_string(),
                scopes: vec!["all".into()],
            }],
            next_id: 100,
            spec_served: vec![0; spec::ENDPOINTS.len()],
            ..SimState::default()
        };
        let hooks = tempfile::tempdir().expect("forge sim: a directory for its git hook");
        let hook = hooks.path().join("pre-receive");
        std::fs::write(&hook, PRE_RECEIVE).expect("forge sim: write the pre-receive hook");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
                .expect("forge sim: make the hook executable");
        }
        let shared = Arc::new(Shared {
            hooks,
            git_root,
            url: format!("http://{addr}"),
            state: Mutex::new(state),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let tx = crate::serve_until_told(listener, app);
        ForgeSim {
            shared,
            addr,
            shutdown: Some(tx),
        }
    }

    /// `http://127.0.0.1:PORT` (the forge's base URL; the API is under `/api/v1`).
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    /// The socket address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The HTTP clone URL of `owner/repo`.
    pub fn clone_url(&self, owner: &str, repo: &str) -> String {
        format!("{}/{owner}/{repo}.git", self.shared.url)
    }

    /// Adds user `login` whose API token is `token`; returns its id. The user can
    /// read public repositories and comment there, and write nowhere until
    /// [`ForgeSim::add_collaborator`].
    pub fn add_user(&self, login: &str, token: &str) -> u64 {
        self.add_user_with_scopes(login, token, &["all"])
    }

    /// As [`ForgeSim::add_user`], with a token holding only `scopes` (Forgejo's
    /// names: `read:issue`, `write:repository`, `read:user`, `all`, …; an empty
    /// list is a token without scopes, refused everywhere a scope is needed).
    pub fn add_user_with_scopes(&self, login: &str, token: &str, scopes: &[&str]) -> u64 {
        let mut st = self.shared.lock();
        assert!(
            st.users
                .iter()
                .all(|u| u.login != login && u.token != token),
            "forge sim: user {login} or its token exists"
        );
        let id = st.next_id();
        st.users.push(SimUser {
            id,
            login: login.to_string(),
            token: token.to_string(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        });
        id
    }

    /// Gives user `login`'s token exactly `scopes` from now on ([`SIM_USER`]'s
    /// included: its token starts with `all`).
    pub fn set_scopes(&self, login: &str, scopes: &[&str]) {
        let mut st = self.shared.lock();
        let user = st
            .users
            .iter_mut()
            .find(|u| u.login == login)
            .unwrap_or_else(|| panic!("forge sim: no user {login}"));
        user.scopes = scopes.iter().map(|s| s.to_string()).collect();
    }

    /// Protects the branches of `owner/repo` matching `pattern` (a shell glob,
    /// `agent/*`): a push to one is refused by the pre-receive hook, as
    /// Forgejo's is (`routers/private/hook_pre_receive.go`: "Not allowed to
    /// push to protected branch …").
    pub fn protect_branch(&self, owner: &str, repo: &str, pattern: &str) {
        self.with_repo(owner, repo, |rs| rs.protected.push(pattern.to_string()));
    }

    /// Gives user `login` write access to `owner/repo` (and sight of it if private).
    pub fn add_collaborator(&self, owner: &str, repo: &str, login: &str) {
        let mut st = self.shared.lock();
        let id = st
            .users
            .iter()
            .find(|u| u.login == login)
            .map(|u| u.id)
            .unwrap_or_else(|| panic!("forge sim: no user {login}"));
        st.repos
            .get_mut(&key(owner, repo))
            .unwrap_or_else(|| panic!("forge sim: add_repo({owner}, {repo}) first"))
            .writers
            .insert(id);
    }

    /// Registers repository `owner/repo` with `default_branch` in the API (public,
    /// time tracking on). Its git data, if any, is the bare repository
    /// `{git_root}/{owner}/{repo}.git`.
    pub fn add_repo(&self, owner: &str, repo: &str, default_branch: &str) {
        let mut st = self.shared.lock();
        let id = st.next_id();
        st.repos
            .entry(key(owner, repo))
            .or_insert_with(|| RepoState {
                id,
                default_branch: default_branch.to_string(),
                time_tracking: true,
                ..RepoState::default()
            });
    }

    pub(super) fn with_repo<T>(
        &self,
        owner: &str,
        repo: &str,
        f: impl FnOnce(&mut RepoState) -> T,
    ) -> T {
        let mut st = self.shared.lock();
        let rs = st
            .repos
            .get_mut(&key(owner, repo))
            .unwrap_or_else(|| panic!("forge sim: add_repo({owner}, {repo}) first"));
        f(rs)
    }

    /// Makes `owner/repo` private (or public again): only its writers see it, over
    /// the API and over git.
    pub fn set_private(&self, owner: &str, repo: &str, private: bool) {
        self.with_repo(owner, repo, |rs| rs.private = private);
    }

    /// Switches time tracking of `owner/repo` on or off.
    pub fn set_time_tracking(&self, owner: &str, repo: &str, enabled: bool) {
        self.with_repo(owner, repo, |rs| rs.time_tracking = enabled);
    }

    /// Adds open issue `number` to `owner/repo` (which must have been added).
    pub fn add_issue(&self, owner: &str, repo: &str, number: u64, title: &str, body: &str) {
        let mut st = self.shared.lock();
        let id = st.next_id();
        let rs = st
            .repos
            .get_mut(&key(owner, repo))
            .unwrap_or_else(|| panic!("forge sim: add_repo({owner}, {repo}) first"));
        assert!(
            !rs.pulls.contains_key(&number),
            "forge sim: #{number} is already a pull request"
        );
        rs.issues.insert(
            number,
            IssueState {
                id,
                title: title.to_string(),
                body: body.to_string(),
                state: "open".into(),
                created: now_rfc3339(),
                poster: SIM_USER_ID,
            },
        );
    }

    /// Adds a comment by user `login` on issue `index`; returns its id.
    pub fn add_comment_as(
        &self,
        owner: &str,
        repo: &str,
        index: u64,
        login: &str,
        body: &str,
    ) -> u64 {
        let mut st = self.shared.lock();
        let poster = st
            .users
            .iter()
            .find(|u| u.login == login)
            .map(|u| u.id)
            .unwrap_or_else(|| panic!("forge sim: no user {login}"));
        assert!(
            issue_exists(&st, owner, repo, &index.to_string()).is_some(),
            "forge sim: no issue {owner}/{repo}#{index}"
        );
        let id = st.next_id();
        let now = now_rfc3339();
        st.comments.push(CommentState {
            id,
            owner: owner.to_string(),
            repo: repo.to_string(),
            issue: index,
            body: body.to_string(),
            created: now.clone(),
            updated: now,
            poster,
        });
        id
    }

    /// Closes pull request `number`.
    pub fn close_pull(&self, owner: &str, repo: &str, number: u64) {
        let mut st = self.shared.lock();
        let pr = st
            .repos
            .get_mut(&key(owner, repo))
            .and_then(|rs| rs.pulls.get_mut(&number))
            .unwrap_or_else(|| panic!("forge sim: no pull request {owner}/{repo}#{number}"));
        pr.state = "closed".into();
    }

    /// Comments on issue or pull request `index`, oldest first.
    pub fn comments(&self, owner: &str, repo: &str, index: u64) -> Vec<SimComment> {
        let st = self.shared.lock();
        st.comments
            .iter()
            .filter(|c| c.owner == owner && c.repo == repo && c.issue == index)
            .map(|c| SimComment {
                id: c.id,
                issue: c.issue,
                body: c.body.clone(),
                author: st.login(c.poster),
            })
            .collect()
    }

    /// All pull requests of `owner/repo` (open and closed), by number.
    pub fn pulls(&self, owner: &str, repo: &str) -> Vec<SimPull> {
        let st = self.shared.lock();
        let Some(rs) = st.repos.get(&key(owner, repo)) else {
            return Vec::new();
        };
        rs.pulls
            .iter()
            .map(|(n, p)| SimPull {
                number: *n,
                title: p.title.clone(),
                body: p.body.clone(),
                head: p.head.clone(),
                head_repo: format!("{}/{}", p.head_repo.0, p.head_repo.1),
                base: p.base.clone(),
                head_sha: p.head_sha.clone(),
                state: p.state.clone(),
                merged: !p.merge_commit.is_empty(),
                labels: rs
                    .issue_labels
                    .get(n)
                    .into_iter()
                    .flatten()
                    .filter_map(|id| rs.labels.get(id).map(|l| l.name.clone()))
                    .collect(),
            })
            .collect()
    }

    /// Statuses set on `sha` (as given in the request path), oldest first.
    pub fn statuses(&self, owner: &str, repo: &str, sha: &str) -> Vec<SimStatus> {
        let st = self.shared.lock();
        st.repos
            .get(&key(owner, repo))
            .and_then(|rs| rs.statuses.get(sha))
            .map(|v| {
                v.iter()
                    .map(|s| SimStatus {
                        state: s.state.clone(),
                        target_url: s.target_url.clone(),
                        description: s.description.clone(),
                        context: s.context.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Tracked times on issue `index`, oldest first.
    pub fn tracked_times(&self, owner: &str, repo: &str, index: u64) -> Vec<SimTrackedTime> {
        let st = self.shared.lock();
        st.times
            .iter()
            .filter(|t| t.owner == owner && t.repo == repo && t.issue == index)
            .map(|t| SimTrackedTime {
                id: t.id,
                user: st.login(t.user),
                seconds: t.time,
                created_unix: t.created_unix,
                from_stopwatch: t.from_stopwatch,
            })
            .collect()
    }

    /// The stopwatch changes on `index`, in order: `"start"`, `"stop"` for a stop
    /// call, and `"stopped by a start elsewhere"` when the same user started one on
    /// another issue (a 409 changes nothing and is not listed; see
    /// [`ForgeSim::requests`] for every call).
    pub fn stopwatch_events(&self, owner: &str, repo: &str, index: u64) -> Vec<String> {
        let st = self.shared.lock();
        st.stopwatch_events
            .iter()
            .filter(|(o, r, n, _)| o == owner && r == repo && *n == index)
            .map(|(_, _, _, e)| e.clone())
            .collect()
    }

    /// Whether [`SIM_USER`]'s stopwatch runs on `index`.
    pub fn stopwatch_running(&self, owner: &str, repo: &str, index: u64) -> bool {
        let st = self.shared.lock();
        st.stopwatches
            .get(&SIM_USER_ID)
            .is_some_and(|s| s.owner == owner && s.repo == repo && s.issue == index)
    }

    /// Every request answered, as (method, path), in order.
    pub fn request_log(&self) -> Vec<(String, String)> {
        self.shared
            .lock()
            .requests
            .iter()
            .map(|r| (r.method.clone(), r.path.clone()))
            .collect()
    }

    /// Every request answered, with query and status, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// How many `method` requests to exactly `path` were answered.
    pub fn count_requests(&self, method: &str, path: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
            .count()
    }

    /// Forgets the request log.
    pub fn clear_request_log(&self) {
        self.shared.lock().requests.clear();
    }

    /// Makes the next `count` `method` requests whose path starts with `path_prefix`
    /// answer `status` (with an `APIError` body) before normal service resumes. The
    /// prefix may be given with or without `/api/v1`.
    pub fn fail_next(&self, method: &str, path_prefix: &str, status: u16, count: usize) {
        self.push_failure(method, path_prefix, status, count, None, false);
    }

    /// As [`ForgeSim::fail_next`], with a `Retry-After: {retry_after_secs}` header.
    pub fn fail_next_with_retry_after(
        &self,
        method: &str,
        path_prefix: &str,
        status: u16,
        count: usize,
        retry_after_secs: u64,
    ) {
        self.push_failure(
            method,
            path_prefix,
            status,
            count,
            Some(retry_after_secs),
            false,
        );
    }

    /// As [`ForgeSim::fail_next`], but each of those requests is carried out first
    /// and only its answer replaced: a forge failing after it stored the write (as
    /// Forgejo's `CreateCommitStatus` can, `services/repository/commitstatus`).
    pub fn fail_next_after_effect(
        &self,
        method: &str,
        path_prefix: &str,
        status: u16,
        count: usize,
    ) {
        self.push_failure(method, path_prefix, status, count, None, true);
    }

    pub(super) fn push_failure(
        &self,
        method: &str,
        path_prefix: &str,
        status: u16,
        count: usize,
        retry_after: Option<u64>,
        after_effect: bool,
    ) {
        if count == 0 {
            return;
        }
        self.shared.lock().failures.push(Failure {
            method: method.to_ascii_uppercase(),
            path_prefix: path_prefix.to_string(),
            status,
            remaining: count,
            retry_after,
            after_effect,
        });
    }

    /// While `down`, the forge is down: every API request and every git
    /// request answers 503.
    pub fn set_down(&self, down: bool) {
        self.shared.lock().down = down;
    }

    /// While `down`, every API request answers 503 and git over HTTP still
    /// works (the API alone failing: a proxy in front of `/api/v1`, say).
    pub fn set_api_down(&self, down: bool) {
        self.shared.lock().api_down = down;
    }

    /// Makes every `method` API request whose path starts with `path_prefix`
    /// (with or without `/api/v1`) hang: accepted and never answered until
    /// [`ForgeSim::stop_hanging`]. Other endpoints go on answering.
    pub fn hang_on(&self, method: &str, path_prefix: &str) {
        self.shared
            .lock()
            .hangs
            .push((method.to_ascii_uppercase(), path_prefix.to_string()));
    }

    /// Ends every [`ForgeSim::hang_on`].
    pub fn stop_hanging(&self) {
        self.shared.lock().hangs.clear();
    }

    /// Delays every API answer by `latency`.
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.shared.lock().latency = latency;
    }

    /// Bodies of the writes the forge took (checked against their definition
    /// and answered with success) of definition `definition`, in order.
    pub fn accepted_bodies(&self, definition: &str) -> Vec<Value> {
        self.shared
            .lock()
            .bodies
            .iter()
            .filter(|(name, _)| *name == definition)
            .map(|(_, body)| body.clone())
            .collect()
    }

    /// Panics if a field of a write was silently dropped: a body carried a
    /// field its definition does not document (Forgejo ignores it), or what
    /// an accepted body said is not what the forge kept (every pull request's
    /// title, body, head and base; every status's state, context, description
    /// and link; every tracked time's seconds; the last comment body sent).
    pub fn assert_nothing_dropped(&self) {
        let unknown = self.unknown_fields();
        assert!(
            unknown.is_empty(),
            "fields the forge would silently drop were sent: {unknown:?}"
        );
        let st = self.shared.lock();
        let text = |v: &Value, k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        for (name, body) in &st.bodies {
            let kept = match *name {
                "CreatePullRequestOption" => {
                    st.repos.values().flat_map(|rs| rs.pulls.values()).any(|p| {
                        let head = text(body, "head");
                        let branch = head.rsplit_once(':').map_or(head.as_str(), |(_, b)| b);
                        p.title == text(body, "title")
                            && p.body == text(body, "body")
                            && p.base == text(body, "base")
                            && p.head == branch
                    })
                }
                "CreateStatusOption" => st
                    .repos
                    .values()
                    .flat_map(|rs| rs.statuses.values().flatten())
                    .any(|s| {
                        s.state == text(body, "state")
                            && s.context == text(body, "context").trim()
                            && s.description == text(body, "description").trim()
                            && s.target_url == text(body, "target_url").trim()
                    }),
                "AddTimeOption" => {
                    let time = body.get("time").and_then(Value::as_i64);
                    st.times.iter().any(|t| Some(t.time) == time)
                }
                _ => true,
            };
            assert!(kept, "the forge did not keep what this {name} said: {body}");
        }
        if let Some((_, last)) = st
            .bodies
            .iter()
            .rev()
            .find(|(name, _)| name.ends_with("IssueCommentOption"))
        {
            let sent = text(last, "body");
            assert!(
                st.comments.iter().any(|c| c.body == sent),
                "the last comment body sent is on no comment: {sent}"
            );
        }
    }

    /// Per endpoint of [`spec::ENDPOINTS`]: how many success answers were
    /// checked against the document; and every answer that did not follow it.
    pub fn spec_report(&self) -> (Vec<(&'static Endpoint, usize)>, Vec<String>) {
        let st = self.shared.lock();
        (
            spec::ENDPOINTS
                .iter()
                .zip(st.spec_served.iter().copied())
                .collect(),
            st.spec_violations.clone(),
        )
    }

    /// While `hang`, every API request is accepted and not answered (until
    /// `hang` is false again): a forge that hangs.
    pub fn set_hang(&self, hang: bool) {
        self.shared.lock().hang = hang;
    }

    /// Pushes served, in order.
    pub fn pushes(&self) -> Vec<PushRecord> {
        self.shared.lock().pushes.clone()
    }

    /// Body fields sent that their option type does not define (`Type.field`), in
    /// order. Forgejo ignores them; a client sending one has a bug.
    pub fn unknown_fields(&self) -> Vec<String> {
        self.shared.lock().unknown_fields.clone()
    }

    /// What `git http-backend` wrote to stderr, one entry per run that wrote any.
    pub fn git_stderr(&self) -> Vec<String> {
        self.shared.lock().git_stderr.clone()
    }
}

impl Drop for ForgeSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
