//! What agentq sends to Forgejo's API and reads back, field by field, as
//! Forgejo's OpenAPI document describes it: `templates/swagger/v1_json.tmpl`
//! of the Forgejo 15 development line (commit 18a4c496f354 of the
//! `live-clones/forgejo` mirror; the document's `info.version` is the
//! templated `{{AppVer}}`, so the commit is its version). Written out here by
//! hand for the endpoints agentq calls, not copied in.
//!
//! A definition is *complete* when every one of its documented properties is
//! listed: the sim's answers must then carry exactly those fields. For the
//! large definitions (`User`, `Repository`, `Issue`, `PullRequest`) only the
//! fields listed are checked (the ones agentq reads, and a few it does not);
//! other fields may be there. [`ENDPOINTS`] says which endpoint sends and
//! answers which definition, and which token scope category Forgejo's router
//! asks for (`routers/api/v1/api.go`: `tokenRequiresScopes` on each route
//! group).

use serde_json::Value;

/// A property's type. Go marshals a nil pointer or slice as `null`, so an
/// object or a list may be `null`; a string, number or boolean may not.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    /// `string`.
    Str,
    /// `string`, `format: date-time` (RFC 3339).
    DateTime,
    /// `integer` (`int64`).
    Int,
    /// `boolean`.
    Bool,
    /// `array` of `string`.
    StrArray,
    /// `array` of `integer`.
    IntArray,
    /// `$ref` to a definition (checked if given here), or `null`.
    Ref(Option<&'static Def>),
    /// `array` of a definition (each checked if given here), or `null`.
    List(Option<&'static Def>),
}

impl Ty {
    /// The type's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Ty::Str => "string",
            Ty::DateTime => "date-time string",
            Ty::Int => "integer",
            Ty::Bool => "boolean",
            Ty::StrArray => "array of strings",
            Ty::IntArray => "array of integers",
            Ty::Ref(_) => "object",
            Ty::List(_) => "array",
        }
    }
}

/// One property.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// JSON name.
    pub name: &'static str,
    /// Type.
    pub ty: Ty,
    /// In a request: Forgejo's binding refuses it missing, empty or zero
    /// (`binding:"Required"`; the document's `required` list, or the Go
    /// struct's tag where the document has none).
    pub required: bool,
}

const fn f(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        required: false,
    }
}

const fn req(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        required: true,
    }
}

/// A definition of the document.
#[derive(Debug)]
pub struct Def {
    /// Its name in `definitions`.
    pub name: &'static str,
    /// Properties checked.
    pub fields: &'static [Field],
    /// Whether [`Def::fields`] is every documented property.
    pub complete: bool,
}

// --- Requests ---------------------------------------------------------------

/// `CreateIssueCommentOption` (required: body).
pub const CREATE_ISSUE_COMMENT: Def = Def {
    name: "CreateIssueCommentOption",
    fields: &[req("body", Ty::Str), f("updated_at", Ty::DateTime)],
    complete: true,
};

/// `EditIssueCommentOption` (required: body).
pub const EDIT_ISSUE_COMMENT: Def = Def {
    name: "EditIssueCommentOption",
    fields: &[req("body", Ty::Str), f("updated_at", Ty::DateTime)],
    complete: true,
};

/// `CreatePullRequestOption`: the document lists no `required`, but
/// Forgejo's struct (`modules/structs/pull.go`) binds head, base and title
/// `Required`.
pub const CREATE_PULL_REQUEST: Def = Def {
    name: "CreatePullRequestOption",
    fields: &[
        f("assignee", Ty::Str),
        f("assignees", Ty::StrArray),
        req("base", Ty::Str),
        f("body", Ty::Str),
        f("due_date", Ty::DateTime),
        req("head", Ty::Str),
        f("labels", Ty::IntArray),
        f("milestone", Ty::Int),
        req("title", Ty::Str),
    ],
    complete: true,
};

/// `CreateStatusOption` (`state` is a `CommitStatusState`, a string).
pub const CREATE_STATUS: Def = Def {
    name: "CreateStatusOption",
    fields: &[
        f("context", Ty::Str),
        f("description", Ty::Str),
        f("state", Ty::Str),
        f("target_url", Ty::Str),
    ],
    complete: true,
};

/// `AddTimeOption` (required: time, so it must be non-zero).
pub const ADD_TIME: Def = Def {
    name: "AddTimeOption",
    fields: &[
        f("created", Ty::DateTime),
        req("time", Ty::Int),
        f("user_name", Ty::Str),
    ],
    complete: true,
};

/// `MergePullRequestOption`: `Do` is required (`binding:"Required;In(…)"`);
/// the message and title fields have no JSON tag in Forgejo's struct
/// (`services/forms/repo_form.go`), so their names are the Go names.
pub const MERGE_PULL_REQUEST: Def = Def {
    name: "MergePullRequestOption",
    fields: &[
        req("Do", Ty::Str),
        f("MergeCommitID", Ty::Str),
        f("MergeMessageField", Ty::Str),
        f("MergeTitleField", Ty::Str),
        f("delete_branch_after_merge", Ty::Bool),
        f("force_merge", Ty::Bool),
        f("head_commit_id", Ty::Str),
        f("merge_when_checks_succeed", Ty::Bool),
    ],
    complete: true,
};

/// `CreateLabelOption` (required: name, color).
pub const CREATE_LABEL: Def = Def {
    name: "CreateLabelOption",
    fields: &[
        req("color", Ty::Str),
        f("description", Ty::Str),
        f("exclusive", Ty::Bool),
        f("is_archived", Ty::Bool),
        req("name", Ty::Str),
    ],
    complete: true,
};

/// `IssueLabelsOption` (`labels`: ids or names).
pub const ISSUE_LABELS: Def = Def {
    name: "IssueLabelsOption",
    fields: &[f("labels", Ty::List(None))],
    complete: true,
};

// --- Answers ----------------------------------------------------------------

/// `Label` (complete).
pub const LABEL: Def = Def {
    name: "Label",
    fields: &[
        f("color", Ty::Str),
        f("description", Ty::Str),
        f("exclusive", Ty::Bool),
        f("id", Ty::Int),
        f("is_archived", Ty::Bool),
        f("name", Ty::Str),
        f("url", Ty::Str),
    ],
    complete: true,
};

/// `User` (the fields checked; the definition has more).
pub const USER: Def = Def {
    name: "User",
    fields: &[
        f("id", Ty::Int),
        f("login", Ty::Str),
        f("login_name", Ty::Str),
        f("full_name", Ty::Str),
        f("email", Ty::Str),
        f("avatar_url", Ty::Str),
        f("html_url", Ty::Str),
        f("is_admin", Ty::Bool),
        f("active", Ty::Bool),
        f("visibility", Ty::Str),
    ],
    complete: false,
};

/// `Repository` (the fields checked; the definition has many more).
pub const REPOSITORY: Def = Def {
    name: "Repository",
    fields: &[
        f("id", Ty::Int),
        f("owner", Ty::Ref(Some(&USER))),
        f("name", Ty::Str),
        f("full_name", Ty::Str),
        f("private", Ty::Bool),
        f("empty", Ty::Bool),
        f("archived", Ty::Bool),
        f("html_url", Ty::Str),
        f("clone_url", Ty::Str),
        f("ssh_url", Ty::Str),
        f("default_branch", Ty::Str),
        f("created_at", Ty::DateTime),
        f("updated_at", Ty::DateTime),
    ],
    complete: false,
};

/// `Issue` (the fields checked; the definition has more).
pub const ISSUE: Def = Def {
    name: "Issue",
    fields: &[
        f("id", Ty::Int),
        f("url", Ty::Str),
        f("html_url", Ty::Str),
        f("number", Ty::Int),
        f("user", Ty::Ref(Some(&USER))),
        f("title", Ty::Str),
        f("body", Ty::Str),
        f("state", Ty::Str),
        f("comments", Ty::Int),
        f("created_at", Ty::DateTime),
        f("updated_at", Ty::DateTime),
        f("labels", Ty::List(None)),
        f("pull_request", Ty::Ref(None)),
    ],
    complete: false,
};

/// `Comment` (complete).
pub const COMMENT: Def = Def {
    name: "Comment",
    fields: &[
        f("assets", Ty::List(None)),
        f("body", Ty::Str),
        f("created_at", Ty::DateTime),
        f("html_url", Ty::Str),
        f("id", Ty::Int),
        f("issue_url", Ty::Str),
        f("original_author", Ty::Str),
        f("original_author_id", Ty::Int),
        f("pull_request_url", Ty::Str),
        f("updated_at", Ty::DateTime),
        f("user", Ty::Ref(Some(&USER))),
    ],
    complete: true,
};

/// `TrackedTime` (complete).
pub const TRACKED_TIME: Def = Def {
    name: "TrackedTime",
    fields: &[
        f("created", Ty::DateTime),
        f("id", Ty::Int),
        f("issue", Ty::Ref(Some(&ISSUE))),
        f("issue_id", Ty::Int),
        f("time", Ty::Int),
        f("user_id", Ty::Int),
        f("user_name", Ty::Str),
    ],
    complete: true,
};

/// `PRBranchInfo` (complete).
pub const PR_BRANCH_INFO: Def = Def {
    name: "PRBranchInfo",
    fields: &[
        f("label", Ty::Str),
        f("ref", Ty::Str),
        f("repo", Ty::Ref(Some(&REPOSITORY))),
        f("repo_id", Ty::Int),
        f("sha", Ty::Str),
    ],
    complete: true,
};

/// `PullRequest` (the fields checked; the definition has more).
pub const PULL_REQUEST: Def = Def {
    name: "PullRequest",
    fields: &[
        f("id", Ty::Int),
        f("url", Ty::Str),
        f("number", Ty::Int),
        f("user", Ty::Ref(Some(&USER))),
        f("title", Ty::Str),
        f("body", Ty::Str),
        f("state", Ty::Str),
        f("html_url", Ty::Str),
        f("merged", Ty::Bool),
        f("head", Ty::Ref(Some(&PR_BRANCH_INFO))),
        f("base", Ty::Ref(Some(&PR_BRANCH_INFO))),
        f("created_at", Ty::DateTime),
    ],
    complete: false,
};

/// `CommitStatus` (complete; `status` is a `CommitStatusState`, a string).
pub const COMMIT_STATUS: Def = Def {
    name: "CommitStatus",
    fields: &[
        f("context", Ty::Str),
        f("created_at", Ty::DateTime),
        f("creator", Ty::Ref(Some(&USER))),
        f("description", Ty::Str),
        f("id", Ty::Int),
        f("status", Ty::Str),
        f("target_url", Ty::Str),
        f("updated_at", Ty::DateTime),
        f("url", Ty::Str),
    ],
    complete: true,
};

/// `CombinedStatus` (complete).
pub const COMBINED_STATUS: Def = Def {
    name: "CombinedStatus",
    fields: &[
        f("commit_url", Ty::Str),
        f("repository", Ty::Ref(Some(&REPOSITORY))),
        f("sha", Ty::Str),
        f("state", Ty::Str),
        f("statuses", Ty::List(Some(&COMMIT_STATUS))),
        f("total_count", Ty::Int),
        f("url", Ty::Str),
    ],
    complete: true,
};

/// `Commit` (complete; `commit` is a `RepoCommit`, `stats` a `CommitStats`).
pub const COMMIT: Def = Def {
    name: "Commit",
    fields: &[
        f("author", Ty::Ref(Some(&USER))),
        f("commit", Ty::Ref(None)),
        f("committer", Ty::Ref(Some(&USER))),
        f("created", Ty::DateTime),
        f("files", Ty::List(None)),
        f("html_url", Ty::Str),
        f("parents", Ty::List(None)),
        f("sha", Ty::Str),
        f("stats", Ty::Ref(None)),
        f("url", Ty::Str),
    ],
    complete: true,
};

// --- Endpoints ----------------------------------------------------------------

/// The token scope category Forgejo's router asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// `user` (`/user` group).
    User,
    /// `repository` (`/repos/{owner}/{repo}` group).
    Repository,
    /// `issue` (`/repos/{owner}/{repo}/issues` group).
    Issue,
}

impl Category {
    /// Its name in a scope (`write:issue`).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::User => "user",
            Category::Repository => "repository",
            Category::Issue => "issue",
        }
    }
}

/// What an answer's body is.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// No body (201 of the stopwatch).
    Empty,
    /// One object.
    One(&'static Def),
    /// A list of them.
    Many(&'static Def),
}

/// One endpoint agentq calls.
#[derive(Debug)]
pub struct Endpoint {
    /// HTTP method.
    pub method: &'static str,
    /// Path under `/api/v1`, as the document writes it.
    pub path: &'static str,
    /// The token scope category it needs (read for GET, write for the rest).
    pub category: Category,
    /// Its JSON body, if any.
    pub request: Option<&'static Def>,
    /// Its success status and body.
    pub answer: (u16, Answer),
}

const fn ep(
    method: &'static str,
    path: &'static str,
    category: Category,
    request: Option<&'static Def>,
    answer: (u16, Answer),
) -> Endpoint {
    Endpoint {
        method,
        path,
        category,
        request,
        answer,
    }
}

/// Every endpoint the sim serves (the ones agentq's client calls), in the
/// order of [`super::Route`]'s variants.
pub const ENDPOINTS: &[Endpoint] = &[
    ep(
        "GET",
        "/user",
        Category::User,
        None,
        (200, Answer::One(&USER)),
    ),
    ep(
        "GET",
        "/repos/{owner}/{repo}",
        Category::Repository,
        None,
        (200, Answer::One(&REPOSITORY)),
    ),
    ep(
        "GET",
        "/repos/{owner}/{repo}/issues/{index}",
        Category::Issue,
        None,
        (200, Answer::One(&ISSUE)),
    ),
    ep(
        "GET",
        "/repos/{owner}/{repo}/issues/{index}/comments",
        Category::Issue,
        None,
        (200, Answer::Many(&COMMENT)),
    ),
    ep(
        "POST",
        "/repos/{owner}/{repo}/issues/{index}/comments",
        Category::Issue,
        Some(&CREATE_ISSUE_COMMENT),
        (201, Answer::One(&COMMENT)),
    ),
    ep(
        "GET",
        "/repos/{owner}/{repo}/issues/comments/{id}",
        Category::Issue,
        None,
        (200, Answer::One(&COMMENT)),
    ),
    ep(
        "PATCH",
        "/repos/{owner}/{repo}/issues/comments/{id}",
        Category::Issue,
        Some(&EDIT_ISSUE_COMMENT),
        (200, Answer::One(&COMMENT)),
    ),
    ep(
        "GET",
        "/repos/{owner}/{repo}/issues/{index}/times",
        Category::Issue,
        None,
        (200, Answer::Many(&TRACKED_TIME)),
    ),
    ep(
        "POST",
        "/repos/{owner}/{repo}/issues/{index}/times",
        Category::Issue,
        Some(&ADD_TIME),
        (200, Answer::One(&TRACKED_TIME)),
    ),
    ep(
        "POST",
        "/repos/{owner}/{repo}/issues/{index}/stopwatch/start",
        Category::Issue,
        None,
        (201, Answer::Empty),
    ),
    ep(
        "POST",
        "/repos/{owner}/{repo}/issues/{index}/stopwatch/stop",
        Category::Issue,
        None,
        (201, Answer::Empty),
    ),
    ep(
        "GET",
        "/repos/{owner}/{repo}/pulls",
        Category::Repository,
        None,
        (200, Answer::Many(&PULL_REQUEST)),
    ),
    ep(
        "POST",
        "/repos/{owner}/{repo}/pulls",
        Category::Repository,
        Some(&CREATE_PULL_REQUEST),
        (201, Answer::One(&PULL_REQUEST)),
    ),
    ep(
        "GET",
        "/repos/{owner}/{repo}/pulls/{base}/{head}",
        Category::Repository,
        None,
        (200, Answer::One(&PULL_REQUEST)),
    ),
    ep(
        "GET",
        "/repos/{owner}/{repo}/statuses/{sha}",
        Category::Repository,
        None,
        (200, Answer::Many(&COMMIT_STATUS)),
    ),
    ep(
        "POST",
        "/repos/{owner}/{repo}/statuses/{sha}",
        Category::Repository,
        Some(&CREATE_STATUS),
        (201, Answer::One(&COMMIT_STATUS)),
    ),
    ep(
        "GET",
        "/repos/{owner}/{repo}/commits/{ref}/status",
        Category::Repository,
        None,
        (200, Answer::One(&COMBINED_STATUS)),
    ),
    ep(
        "GET",
        "/repos/{owner}/{repo}/git/commits/{sha}",
        Category::Repository,
        None,
        (200, Answer::One(&COMMIT)),
    ),
    ep(
        "GET",
        "/repos/{owner}/{repo}/pulls/{index}",
        Category::Repository,
        None,
        (200, Answer::One(&PULL_REQUEST)),
    ),
    ep(
        "POST",
        "/repos/{owner}/{repo}/pulls/{index}/merge",
        Category::Repository,
        Some(&MERGE_PULL_REQUEST),
        (200, Answer::Empty),
    ),
    // Labels belong to the issue group (`routers/api/v1/api.go`).
    ep(
        "GET",
        "/repos/{owner}/{repo}/labels",
        Category::Issue,
        None,
        (200, Answer::Many(&LABEL)),
    ),
    ep(
        "POST",
        "/repos/{owner}/{repo}/labels",
        Category::Issue,
        Some(&CREATE_LABEL),
        (201, Answer::One(&LABEL)),
    ),
    ep(
        "POST",
        "/repos/{owner}/{repo}/issues/{index}/labels",
        Category::Issue,
        Some(&ISSUE_LABELS),
        (200, Answer::Many(&LABEL)),
    ),
    ep(
        "DELETE",
        "/repos/{owner}/{repo}/branches/{branch}",
        Category::Repository,
        None,
        (204, Answer::Empty),
    ),
];

// --- Checks ---------------------------------------------------------------------

fn type_ok(ty: Ty, v: &Value) -> bool {
    match ty {
        Ty::Str => v.is_string(),
        Ty::DateTime => v
            .as_str()
            .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
        Ty::Int => v.is_i64() || v.is_u64(),
        Ty::Bool => v.is_boolean(),
        Ty::StrArray => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        Ty::IntArray => v
            .as_array()
            .is_some_and(|a| a.iter().all(|x| x.is_i64() || x.is_u64())),
        Ty::Ref(_) => v.is_object() || v.is_null(),
        Ty::List(_) => v.is_array() || v.is_null(),
    }
}

/// Checks an answer's object against `def`: every listed field there with
/// its type (nested definitions too), and for a complete definition, no
/// other field. The error names the field by its path (`head.repo.id`).
pub fn check_answer(def: &Def, v: &Value, at: &str) -> Result<(), String> {
    let Some(obj) = v.as_object() else {
        return Err(format!("{at}: a {} must be an object, got {v}", def.name));
    };
    for field in def.fields {
        let here = if at.is_empty() {
            field.name.to_string()
        } else {
            format!("{at}.{}", field.name)
        };
        let Some(value) = obj.get(field.name) else {
            return Err(format!("{here}: missing ({} documents it)", def.name));
        };
        if !type_ok(field.ty, value) {
            return Err(format!(
                "{here}: must be a {} ({}), got {value}",
                field.ty.name(),
                def.name
            ));
        }
        match (field.ty, value) {
            (Ty::Ref(Some(inner)), Value::Object(_)) => check_answer(inner, value, &here)?,
            (Ty::List(Some(inner)), Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    check_answer(inner, item, &format!("{here}[{i}]"))?;
                }
            }
            _ => {}
        }
    }
    if def.complete {
        if let Some(extra) = obj
            .keys()
            .find(|k| !def.fields.iter().any(|fd| fd.name == k.as_str()))
        {
            return Err(format!("{at}.{extra}: {} does not document it", def.name));
        }
    }
    Ok(())
}

/// Checks an answer body against an endpoint's [`Answer`].
pub fn check_body(answer: Answer, body: &[u8]) -> Result<(), String> {
    match answer {
        Answer::Empty => {
            if body.is_empty() {
                Ok(())
            } else {
                Err("the answer must have no body".into())
            }
        }
        Answer::One(def) => {
            let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
            check_answer(def, &v, "")
        }
        Answer::Many(def) => {
            let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
            let items = v
                .as_array()
                .ok_or_else(|| format!("a list of {} must be an array", def.name))?;
            for (i, item) in items.iter().enumerate() {
                check_answer(def, item, &format!("[{i}]"))?;
            }
            Ok(())
        }
    }
}

/// Fields of a request body that its definition does not document, as
/// `Type.field`. Go's JSON decoding ignores them (Forgejo's `bind` does not
/// refuse unknown fields), so the request goes on and the field is silently
/// dropped: the sim records them for tests to refuse.
pub fn unknown_fields(def: &Def, body: &Value) -> Vec<String> {
    body.as_object()
        .map(|obj| {
            obj.keys()
                .filter(|k| !def.fields.iter().any(|fd| fd.name == k.as_str()))
                .map(|k| format!("{}.{k}", def.name))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks a request body against `def` as Forgejo's binding does: the JSON
/// types (a value Go cannot decode into the field, a date that is not RFC
/// 3339, is refused) and the `Required` fields (missing, empty or zero
/// refused). The message names the field.
pub fn check_request(def: &Def, body: &Value) -> Result<serde_json::Map<String, Value>, String> {
    let Some(obj) = body.as_object() else {
        return Err(format!("{}: the body must be a JSON object", def.name));
    };
    for field in def.fields {
        let name = field.name;
        match obj.get(name) {
            None | Some(Value::Null) if field.required => {
                return Err(format!("{}: field `{name}` is required", def.name));
            }
            None | Some(Value::Null) => {}
            Some(v) if !type_ok(field.ty, v) => {
                return Err(format!(
                    "{}: field `{name}` must be a {}, got {v}",
                    def.name,
                    field.ty.name()
                ));
            }
            Some(Value::String(s)) if field.required && s.trim().is_empty() => {
                return Err(format!("{}: field `{name}` is required (empty)", def.name));
            }
            Some(Value::Number(n)) if field.required && n.as_i64() == Some(0) => {
                return Err(format!("{}: field `{name}` is required (zero)", def.name));
            }
            Some(_) => {}
        }
    }
    Ok(obj.clone())
}

/// The coverage table: one line per endpoint with its scope, request fields
/// and answer fields (`*` after a definition: complete).
pub fn coverage() -> String {
    fn fields(def: &Def) -> String {
        let names: Vec<String> = def
            .fields
            .iter()
            .map(|fd| {
                if fd.required {
                    format!("{}!", fd.name)
                } else {
                    fd.name.to_string()
                }
            })
            .collect();
        format!(
            "{}{} [{}]",
            def.name,
            if def.complete { "*" } else { "" },
            names.join(", ")
        )
    }
    let mut out = String::new();
    for e in ENDPOINTS {
        let level = if e.method == "GET" { "read" } else { "write" };
        let request = e.request.map(fields).unwrap_or_else(|| "-".into());
        let answer = match e.answer.1 {
            Answer::Empty => "(empty)".to_string(),
            Answer::One(d) => fields(d),
            Answer::Many(d) => format!("list of {}", fields(d)),
        };
        out.push_str(&format!(
            "{} {} | {level}:{} | request {request} | {} {answer}\n",
            e.method,
            e.path,
            e.category.as_str(),
            e.answer.0
        ));
    }
    out
}
