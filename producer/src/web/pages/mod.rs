//! The HTML pages, one module each, rendered on the server with maud (which
//! escapes every interpolated string) with the layout of
//! [`views`](super::views). Forms post to the JSON API with a `next` page to
//! come back to and the session's CSRF token; they appear only to a logged-in
//! operator. `assets/app.js` adds the live parts (log, state, events) and
//! confirmations.

mod assets;
mod events;
mod job;
mod jobs;
mod login;
mod notifications;
mod overview;

pub use assets::{app_js, style_css};
pub use events::events;
pub use job::job;
pub use jobs::{bulk_confirm, jobs};
pub use login::login;
pub use notifications::notifications;
pub use overview::overview;
