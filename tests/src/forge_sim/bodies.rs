//! Request bodies, checked against the spec's option types ([`spec`]).

use super::*;

pub(super) async fn read_json(
    sh: &Shared,
    req: Request,
    schema: &Def,
) -> Result<Map<String, Value>, Response> {
    let json_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .map_err(|e| {
            api_error(
                sh,
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        })?;
    if !json_type {
        return Err(validation_error(
            sh,
            format!("{}: Content-Type must be application/json", schema.name),
        ));
    }
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| validation_error(sh, format!("{}: the body is not JSON: {e}", schema.name)))?;
    let checked = spec::check_request(schema, &value).map_err(|m| validation_error(sh, m));
    sh.lock()
        .unknown_fields
        .extend(spec::unknown_fields(schema, &value));
    checked
}

pub(super) fn str_field<'a>(body: &'a Map<String, Value>, name: &str) -> &'a str {
    body.get(name).and_then(Value::as_str).unwrap_or_default()
}
