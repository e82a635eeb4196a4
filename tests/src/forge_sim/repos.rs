//! The repository route.

use super::*;

pub(super) fn get_repo(sh: &Shared, o: &str, r: &str, who: Option<u64>) -> Response {
    let st = sh.lock();
    match st.repos.get(&key(o, r)) {
        Some(rs) => json_response(StatusCode::OK, repo_json(sh, &st, o, r, rs, who)),
        None => not_found(sh),
    }
}
