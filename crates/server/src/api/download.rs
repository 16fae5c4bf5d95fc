//! Artifact downloads, streamed from the artifact store instead of read into memory (a merged
//! decoder is hundreds of MB): `Content-Length`, a strong `ETag` (the artifact's sha256, as
//! recorded when it was stored), `If-None-Match` (304), and single byte ranges
//! (`Range: bytes=a-b`, `a-`, `-n`; 206 with `Content-Range`, 416 when unsatisfiable;
//! `If-Range` with another tag gets the whole file). Multiple ranges get the whole file,
//! which RFC 9110 allows.

use std::ops::Range;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use crate::{ApiResult, AppError, AppState};

/// What the request's `Range` header asks of an object of `size` bytes.
#[derive(Debug, PartialEq)]
pub(crate) enum Wanted {
    Whole,
    Part(Range<u64>),
    Unsatisfiable,
}

pub(crate) fn wanted(range: Option<&str>, size: u64) -> Wanted {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else { return Wanted::Whole };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return Wanted::Whole };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => Some((start, end.saturating_add(1).min(size))),
        (Ok(start), Err(_)) if b.is_empty() => Some((start, size)),
        (Err(_), Ok(n)) if a.is_empty() => Some((size.saturating_sub(n), size)),
        _ => return Wanted::Whole, // not a range we understand: ignore it
    };
    match parsed {
        Some((start, end)) if start < end => Wanted::Part(start..end),
        _ => Wanted::Unsatisfiable,
    }
}

/// Serves the artifact at `uri` whose recorded sha256 is `sha256`.
pub(crate) async fn artifact(
    st: &AppState,
    headers: &HeaderMap,
    uri: &str,
    sha256: &str,
    content_type: &str,
    filename: &str,
) -> ApiResult<Response> {
    let etag = format!("\"{sha256}\"");
    let header_str = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let base = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::HeaderName::from_static("x-content-sha256"), sha256);
    if header_str(header::IF_NONE_MATCH).is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*")) {
        return base.status(StatusCode::NOT_MODIFIED).body(Body::empty()).map_err(AppError::internal);
    }
    let size = st.artifacts.size(uri).await?;
    let range_applies = header_str(header::IF_RANGE).is_none_or(|v| v.trim() == etag);
    let want = if range_applies { wanted(header_str(header::RANGE), size) } else { Wanted::Whole };
    let base = base.header(header::CONTENT_TYPE, content_type).header(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")).map_err(AppError::internal)?,
    );
    match want {
        Wanted::Unsatisfiable => base
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header(header::CONTENT_RANGE, format!("bytes */{size}"))
            .body(Body::empty())
            .map_err(AppError::internal),
        Wanted::Whole => {
            let object = st.artifacts.stream(uri, None).await?;
            base.status(StatusCode::OK)
                .header(header::CONTENT_LENGTH, object.size)
                .body(Body::from_stream(object.body))
                .map_err(AppError::internal)
        }
        Wanted::Part(range) => {
            let object = st.artifacts.stream(uri, Some(range)).await?;
            let r = &object.range;
            base.status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_RANGE, format!("bytes {}-{}/{}", r.start, r.end - 1, object.size))
                .header(header::CONTENT_LENGTH, r.end - r.start)
                .body(Body::from_stream(object.body))
                .map_err(AppError::internal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{wanted, Wanted};

    #[test]
    fn byte_ranges() {
        assert_eq!(wanted(None, 100), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=0-9"), 100), Wanted::Part(0..10));
        assert_eq!(wanted(Some("bytes=90-"), 100), Wanted::Part(90..100));
        assert_eq!(wanted(Some("bytes=-5"), 100), Wanted::Part(95..100));
        assert_eq!(wanted(Some("bytes=95-200"), 100), Wanted::Part(95..100), "an end past the size is clamped");
        assert_eq!(wanted(Some("bytes=-500"), 100), Wanted::Part(0..100));
        assert_eq!(wanted(Some("bytes=100-"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=150-160"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-0"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=0-1,5-6"), 100), Wanted::Whole, "several ranges: the whole file");
        assert_eq!(wanted(Some("bytes=9-3"), 100), Wanted::Whole, "malformed: ignored");
        assert_eq!(wanted(Some("items=0-3"), 100), Wanted::Whole);
    }
}
