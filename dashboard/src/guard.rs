//! What stands between the page/API and whoever can reach the Service:
//! an optional shared token, security headers and request limits. `/metrics`
//! and the health endpoints are not behind it (probes and scrapers carry no
//! token; they reveal nothing of the warehouse).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use subtle::ConstantTimeEq;
use tower::limit::ConcurrencyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

/// Everything the page loads is served from here (no CDN, no inline script or
/// style), so the policy can forbid every other origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Requests served at once; more wait their turn (a refresh sends about ten).
pub const MAX_CONCURRENT_REQUESTS: usize = 64;

/// Does this `Authorization` header carry the token? Accepted as
/// `Bearer TOKEN` (scripts, curl) or as HTTP Basic with any user name and the
/// token as password, so a browser can ask for it with its own dialog and send
/// it with every request the page makes.
pub fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    let presented = if scheme.eq_ignore_ascii_case("bearer") {
        credentials.trim().as_bytes().to_vec()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credentials.trim()) else {
            return false;
        };
        match decoded.iter().position(|&b| b == b':') {
            Some(colon) => decoded[colon + 1..].to_vec(),
            None => return false,
        }
    } else {
        return false;
    };
    // Constant time: the comparison says nothing about how much of a guess was right.
    bool::from(presented.as_slice().ct_eq(token.as_bytes()))
}

async fn require_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    if authorized(request.headers(), &token) {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, r#"Basic realm="shopstream", charset="UTF-8""#)],
            "a token is required: Authorization: Bearer TOKEN (or the browser's sign-in with the token as password)\n",
        )
            .into_response()
    }
}

/// The page and API router with the guard around it: the token check (when a
/// token is set), security headers on every answer, and request limits.
pub fn protect(router: Router, token: Option<Arc<str>>, request_timeout: Duration) -> Router {
    let router = match token {
        Some(token) => router.layer(middleware::from_fn_with_state(token, require_token)),
        None => router,
    };
    let headers: [(HeaderName, &'static str); 5] = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    let mut router = router
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
        .layer(ConcurrencyLimitLayer::new(MAX_CONCURRENT_REQUESTS));
    for (name, value) in headers {
        router = router.layer(SetResponseHeaderLayer::overriding(
            name,
            HeaderValue::from_static(value),
        ));
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn basic(user_and_password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_and_password)
        )
    }

    #[test]
    fn only_the_token_opens_the_door() {
        let token = "s3cret-token";
        let cases: &[(Option<String>, bool)] = &[
            (None, false),
            (Some("Bearer s3cret-token".into()), true),
            (Some("bearer s3cret-token".into()), true),
            (Some("Bearer s3cret-toke".into()), false),
            (Some("Bearer s3cret-token-and-more".into()), false),
            (Some("Bearer ".into()), false),
            (Some("s3cret-token".into()), false),
            (Some(basic("anyone:s3cret-token")), true),
            (Some(basic(":s3cret-token")), true),
            (Some(basic("s3cret-token:")), false),
            (Some(basic("s3cret-token")), false),
            (Some("Basic not-base64!".into()), false),
            (Some("Digest s3cret-token".into()), false),
        ];
        for (value, want) in cases {
            assert_eq!(authorized(&with(value.as_deref()), token), *want, "{value:?}");
        }
    }
}
