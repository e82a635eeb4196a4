use super::*;

#[test]
fn base64_decodes_basic_credentials() {
    assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
    assert_eq!(base64_decode("YTpiYw==").unwrap(), b"a:bc");
    assert!(base64_decode("!!").is_none());
}

#[test]
fn git_paths_are_parsed_and_guarded() {
    assert_eq!(
        parse_git_path("/acme/widget.git/info/refs"),
        Some(("acme".into(), "widget".into(), "info/refs".into()))
    );
    assert_eq!(parse_git_path("/acme/widget.git/"), None);
    assert_eq!(parse_git_path("/acme/widget/info/refs"), None);
    assert_eq!(parse_git_path("/../widget.git/info/refs"), None);
    assert_eq!(parse_git_path("/acme/widget.git/objects/../../x"), None);
}

#[test]
fn queries_and_paths_are_decoded() {
    assert_eq!(percent_decode("a%20b%2Fc%"), "a b/c%");
    let q = parse_query("state=open&page=2&service=git-upload-pack&x=a+b");
    assert_eq!(q["page"], "2");
    assert_eq!(q["x"], "a b");
}

#[test]
fn bodies_are_checked_against_the_schema() {
    use spec::{check_request as validate, *};
    let ok = json!({"body": "hi"});
    assert!(validate(&CREATE_ISSUE_COMMENT, &ok).is_ok());
    let e = validate(&CREATE_ISSUE_COMMENT, &json!({})).unwrap_err();
    assert!(e.contains("`body` is required"), "{e}");
    let e = validate(&CREATE_ISSUE_COMMENT, &json!({"body": 3})).unwrap_err();
    assert!(e.contains("must be a string"), "{e}");
    let odd = json!({"state": "success", "target-url": "x"});
    assert!(validate(&CREATE_STATUS, &odd).is_ok());
    assert_eq!(
        unknown_fields(&CREATE_STATUS, &odd),
        ["CreateStatusOption.target-url"]
    );
    let e = validate(&ADD_TIME, &json!({"time": 0})).unwrap_err();
    assert!(e.contains("`time` is required"), "{e}");
    let e = validate(&ADD_TIME, &json!({"time": 5, "created": "yesterday"})).unwrap_err();
    assert!(e.contains("`created` must be a date-time string"), "{e}");
    let e = validate(
        &CREATE_PULL_REQUEST,
        &json!({"head": "a", "base": "b", "title": " "}),
    )
    .unwrap_err();
    assert!(e.contains("`title` is required"), "{e}");
    assert!(validate(&CREATE_PULL_REQUEST, &json!([1])).is_err());
}

#[test]
fn answers_are_checked_field_by_field() {
    use spec::*;
    let user = json!({"id": 1, "login": "a", "login_name": "", "full_name": "",
        "email": "", "avatar_url": "", "html_url": "", "is_admin": false,
        "active": true, "visibility": "public"});
    let status = json!({"id": 1, "status": "success", "target_url": "",
        "description": "", "url": "", "context": "c", "creator": user,
        "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z"});
    assert_eq!(check_answer(&COMMIT_STATUS, &status, ""), Ok(()));
    // A complete definition: a field it does not document is refused.
    let mut extra = status.clone();
    extra["state"] = json!("success");
    let e = check_answer(&COMMIT_STATUS, &extra, "").unwrap_err();
    assert!(
        e.contains(".state: CommitStatus does not document it"),
        "{e}"
    );
    // A missing field, a wrong type, a bad date, a nested definition.
    let mut missing = status.clone();
    missing.as_object_mut().unwrap().remove("context");
    assert!(check_answer(&COMMIT_STATUS, &missing, "")
        .unwrap_err()
        .contains("context: missing"));
    let mut wrong = status.clone();
    wrong["id"] = json!("1");
    assert!(check_answer(&COMMIT_STATUS, &wrong, "").is_err());
    let mut date = status.clone();
    date["created_at"] = json!("2024-01-01 00:00");
    assert!(check_answer(&COMMIT_STATUS, &date, "").is_err());
    let mut nested = status.clone();
    nested["creator"]["login"] = json!(7);
    let e = check_answer(&COMMIT_STATUS, &nested, "").unwrap_err();
    assert!(e.starts_with("creator.login:"), "{e}");
    // Objects and lists may be null (Go's nil); a list is checked item by item.
    let mut null_creator = status.clone();
    null_creator["creator"] = Value::Null;
    assert_eq!(check_answer(&COMMIT_STATUS, &null_creator, ""), Ok(()));
    let list = serde_json::to_vec(&json!([status, wrong])).unwrap();
    assert!(check_body(Answer::Many(&COMMIT_STATUS), &list)
        .unwrap_err()
        .starts_with("[1].id"));
    assert!(check_body(Answer::Empty, b"").is_ok());
    assert!(check_body(Answer::Empty, b"{}").is_err());
}

#[test]
fn scopes_follow_forgejos_levels() {
    let st = SimState {
        users: vec![SimUser {
            id: 1,
            login: "a".into(),
            token: "t".into(),
            scopes: vec!["write:issue".into(), "read:repository".into()],
        }],
        ..SimState::default()
    };
    assert!(st.has_scope(1, "write:issue"));
    assert!(st.has_scope(1, "read:issue"), "write holds read");
    assert!(st.has_scope(1, "read:repository"));
    assert!(
        !st.has_scope(1, "write:repository"),
        "read does not hold write"
    );
    assert!(!st.has_scope(1, "read:user"));
    assert!(!st.has_scope(2, "read:user"), "no such user");
}

#[test]
fn the_coverage_table_lists_every_endpoint() {
    let table = spec::coverage();
    assert_eq!(table.lines().count(), spec::ENDPOINTS.len(), "{table}");
    assert!(
        table.contains("POST /repos/{owner}/{repo}/pulls | write:repository | request CreatePullRequestOption* [assignee, assignees, base!, body, due_date, head!, labels, milestone, title!]"),
        "{table}"
    );
}

#[test]
fn timestamps_are_rfc3339() {
    let t = now_rfc3339();
    assert_eq!(t.len(), 20, "{t}");
    assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
}
