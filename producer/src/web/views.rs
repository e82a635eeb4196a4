//! What every page shares: who looks ([`Viewer`]), the layout with its
//! navigation, form fields, and the pages that are only a message (an error,
//! a refused form post, the login form). Rendered with maud, which escapes
//! every interpolated string.

use axum::{
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use maud::{html, Markup, DOCTYPE};

use super::{error::ApiError, params::local_path, session::csrf_of, state::AppState};

/// Who looks: whether the console takes changes, and the CSRF token of a
/// logged-in operator.
pub struct Viewer {
    /// Whether the console takes no changes (no operator token).
    pub read_only: bool,
    /// The CSRF token of a logged-in operator; `None`: show no forms.
    pub csrf: Option<String>,
    /// The page's own path and query: where logging in comes back to.
    pub here: String,
}

/// Who looks at the page at `uri`.
pub fn viewer(app: &AppState, headers: &HeaderMap, uri: &Uri) -> Viewer {
    Viewer {
        read_only: app.token.is_none(),
        csrf: csrf_of(app, headers),
        here: uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
    }
}

/// The login page's address, coming back to `here` (a local path) after.
fn login_href(here: &str) -> String {
    if here == "/" || !local_path(here) {
        return "/login".into();
    }
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("next", here);
    format!("/login?{}", q.finish())
}

/// A page: `body` with the navigation, titled `title`.
pub fn layout(title: &str, v: &Viewer, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · agentq" }
                link rel="stylesheet" href="/assets/style.css";
                script src="/assets/app.js" defer {}
            }
            body {
                nav {
                    a.brand href="/" { "agentq" }
                    a href="/" { "Overview" }
                    a href="/jobs" { "Jobs" }
                    a href="/events" { "Events" }
                    a href="/notifications" { "Notifications" }
                    span.mode {
                        @if v.read_only {
                            span #mode { "read-only" }
                        } @else if let Some(csrf) = &v.csrf {
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button #logout type="submit" { "Log out" }
                            }
                        } @else {
                            a #login href=(login_href(&v.here)) { "Log in" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A hidden CSRF field and the page to come back to.
pub fn form_extras(csrf: &str, next: &str) -> Markup {
    html! {
        input type="hidden" name="csrf" value=(csrf);
        input type="hidden" name="next" value=(next);
    }
}

/// An error as a page: its status and message.
pub fn error_page(v: &Viewer, e: &ApiError) -> Response {
    (
        e.status,
        layout("Error", v, html! { h1 { "Error" } p.error { (e.message) } }),
    )
        .into_response()
}

/// A refused form post, as a page: its status and reason.
pub fn message_page(status: StatusCode, message: &str) -> Markup {
    let v = Viewer {
        read_only: false,
        csrf: None,
        here: "/".into(),
    };
    layout(
        "Refused",
        &v,
        html! {
            h1 { "Not done" }
            p.error #refused { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) ": " (message) }
            p { a href="/" { "Overview" } " · " a href="/jobs" { "Jobs" } }
        },
    )
}

/// The login page; `next`: the page to come back to (a local path, else
/// the overview).
pub fn login_page(read_only: bool, error: Option<&str>, next: Option<&str>) -> Markup {
    let next = next.filter(|n| local_path(n)).unwrap_or("/");
    let v = Viewer {
        read_only,
        csrf: None,
        here: next.to_string(),
    };
    layout(
        "Log in",
        &v,
        html! {
            h1 { "Log in" }
            @if let Some(e) = error { p.error #login-error { (e) } }
            @if !read_only {
                form method="post" action="/login" {
                    input type="hidden" name="next" value=(next);
                    label { "Operator token " input #token type="password" name="token" autocomplete="current-password" required; }
                    " " button #login-submit type="submit" { "Log in" }
                }
            }
        },
    )
}
