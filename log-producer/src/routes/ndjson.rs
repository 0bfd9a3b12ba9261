//! The NDJSON body of `/bulk`: which content types it may come as, and its lines.

use actix_web::http::header;
use actix_web::HttpRequest;
use log_common::error::ApiError;
use serde_json::Value;

/// A missing Content-Type is taken as NDJSON; JSON and plain text are accepted too.
pub fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let mime = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    const ACCEPTED: [&str; 5] = [
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/json",
        "text/plain",
    ];
    if ACCEPTED.iter().any(|a| a.eq_ignore_ascii_case(mime)) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/x-ndjson (or {}), got '{mime}'",
            ACCEPTED[1..].join(", ")
        )))
    }
}

/// The body's non-blank lines, each with its 0-based line number, parsed or with the
/// reason it is not JSON.
pub fn lines(body: &[u8]) -> Vec<(usize, Result<Value, String>)> {
    body.split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.trim_ascii().is_empty())
        .map(|(line_no, line)| {
            let parsed =
                serde_json::from_slice::<Value>(line).map_err(|e| format!("malformed JSON: {e}"));
            (line_no, parsed)
        })
        .collect()
}
