//! Who may use the API and the dashboard.
//!
//! - **With a token** (`scheduler.http_token`): a request must carry it, as
//!   `Authorization: Bearer TOKEN` (scripts, the CLI) or as the session cookie that
//!   `POST /login` sets after checking it (the page). The cookie holds a SHA-256 of the
//!   token, never the token; it is `HttpOnly` and `SameSite=Strict`. Anything else gets
//!   401: a JSON error from `/api/`, the login form from the page.
//! - **Without a token**, which the configuration allows on a loopback address only,
//!   requests are let through, but only with a loopback `Host` (so a web page cannot
//!   reach the endpoint by rebinding its own name to 127.0.0.1).
//! - **Every POST** (replay, purge, cancel, schedule changes) must be same-origin: an
//!   `Origin` header, when the browser sends one, must name the host the request was sent
//!   to, and API bodies are JSON (a cross-site form cannot send that without a CORS
//!   preflight, which this endpoint never answers). With `SameSite=Strict` this makes
//!   the page safe from cross-site request forgery.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use jobfleet_common::config::AccessToken;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The session cookie's name.
const COOKIE: &str = "jobfleet_session";

/// The access rule of one endpoint.
#[derive(Clone)]
pub(crate) struct Guard {
    /// SHA-256 of the token, hex; `None` when no token is set (loopback only).
    session: Option<String>,
    token: Option<AccessToken>,
}

impl Guard {
    /// The rule for `token` on an endpoint bound to a loopback address or not; `None`
    /// (serve no API) for a non-loopback address without a token.
    pub fn new(token: Option<AccessToken>, loopback: bool) -> Option<Self> {
        if token.is_none() && !loopback {
            return None;
        }
        Some(Self {
            session: token.as_ref().map(|t| session_value(t.expose())),
            token,
        })
    }

    /// Whether `headers` carry the token (bearer) or the session cookie.
    fn authenticated(&self, headers: &HeaderMap) -> bool {
        let (Some(token), Some(session)) = (&self.token, &self.session) else {
            return true;
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let Some(given) = bearer {
            return same(&session_value(given.trim()), &session_value(token.expose()));
        }
        cookie(headers, COOKIE).is_some_and(|c| same(c, session))
    }
}

/// The middleware in front of the API and the page.
pub(crate) async fn check(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if guard.token.is_none() && !loopback_host(headers) {
        return refuse(
            StatusCode::FORBIDDEN,
            "this endpoint has no access token and answers only requests addressed to a \
             loopback host (127.0.0.1, localhost, [::1])",
        );
    }
    if !guard.authenticated(headers) {
        if request.uri().path().starts_with("/api/") {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "missing or wrong access token: send `Authorization: Bearer TOKEN` \
                 (scheduler.http_token)",
            );
        }
        return login_page(StatusCode::UNAUTHORIZED, None);
    }
    if request.method() == Method::POST && !same_origin(headers) {
        return refuse(
            StatusCode::FORBIDDEN,
            "cross-origin request refused: the Origin header does not name this host",
        );
    }
    next.run(request).await
}

/// `POST /login` (the form's `token`) and `POST /logout`.
pub(crate) fn router(guard: Guard) -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .with_state(guard)
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(guard): State<Guard>, headers: HeaderMap, form: Form<LoginForm>) -> Response {
    if !same_origin(&headers) {
        return refuse(StatusCode::FORBIDDEN, "cross-origin login refused");
    }
    let Some(session) = &guard.session else {
        return Redirect::to("/").into_response();
    };
    if !same(&session_value(form.token.trim()), session) {
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("That is not the access token."),
        );
    }
    let cookie = format!("{COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

/// A JSON error body: `{"error": "..."}`.
pub(crate) fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// The login form, with an optional complaint about the last try.
fn login_page(status: StatusCode, complaint: Option<&str>) -> Response {
    let complaint = complaint
        .map(|c| format!("<p class=\"complaint\">{c}</p>"))
        .unwrap_or_default();
    let page = include_str!("assets/login.html").replace("{complaint}", &complaint);
    let csp = (header::CONTENT_SECURITY_POLICY, super::dashboard::CSP);
    (status, [csp], Html(page)).into_response()
}

/// The cookie value for `token`: its SHA-256 in hex, so the cookie never holds the token.
fn session_value(token: &str) -> String {
    let digest = Sha256::digest(format!("jobfleet-session:{token}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal strings, compared in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of cookie `name`, if the request carries it.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The request's `Host` without its port.
fn host_name(headers: &HeaderMap) -> Option<&str> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    Some(match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.split(':').next().unwrap_or(host),
    })
}

fn loopback_host(headers: &HeaderMap) -> bool {
    host_name(headers).is_some_and(|h| {
        h.eq_ignore_ascii_case("localhost")
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

/// True unless the request carries an `Origin` naming another host than its `Host`.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(host)) = (origin.to_str(), headers.get(header::HOST)) else {
        return false;
    };
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    authority.is_some_and(|a| host.to_str().is_ok_and(|h| a.eq_ignore_ascii_case(h)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn a_token_or_its_session_cookie_authenticates_nothing_else() {
        let token = AccessToken::new("0123456789abcdef-canary");
        let guard = Guard::new(Some(token), false).expect("a token allows any address");
        let session = session_value("0123456789abcdef-canary");
        assert!(!session.contains("canary"));
        let ok = [
            headers(&[(header::AUTHORIZATION, "Bearer 0123456789abcdef-canary")]),
            headers(&[(header::COOKIE, &format!("a=b; {COOKIE}={session}"))]),
        ];
        for h in &ok {
            assert!(guard.authenticated(h), "{h:?}");
        }
        let refused = [
            headers(&[]),
            headers(&[(header::AUTHORIZATION, "Bearer 0123456789abcdef")]),
            headers(&[(header::AUTHORIZATION, "Basic 0123456789abcdef-canary")]),
            // The raw token is not a session.
            headers(&[(header::COOKIE, &format!("{COOKIE}=0123456789abcdef-canary"))]),
            headers(&[(header::COOKIE, &format!("other={session}"))]),
        ];
        for h in &refused {
            assert!(!guard.authenticated(h), "{h:?}");
        }
    }

    #[test]
    fn no_token_is_allowed_on_loopback_only() {
        assert!(Guard::new(None, false).is_none());
        let guard = Guard::new(None, true).expect("loopback");
        assert!(guard.authenticated(&headers(&[])));
        for host in ["127.0.0.1:9464", "localhost", "[::1]:80", "LOCALHOST:1"] {
            assert!(loopback_host(&headers(&[(header::HOST, host)])), "{host}");
        }
        for host in ["evil.example:9464", "127.0.0.1.evil.example", "10.0.0.1:1"] {
            assert!(!loopback_host(&headers(&[(header::HOST, host)])), "{host}");
        }
        assert!(!loopback_host(&headers(&[])));
    }

    #[test]
    fn posts_from_another_origin_are_told_apart() {
        let host = (header::HOST, "127.0.0.1:9464");
        assert!(same_origin(&headers(std::slice::from_ref(&host))));
        let own = (header::ORIGIN, "http://127.0.0.1:9464");
        assert!(same_origin(&headers(&[host.clone(), own])));
        for origin in ["http://evil.example", "null", "http://127.0.0.1:9465"] {
            let h = headers(&[host.clone(), (header::ORIGIN, origin)]);
            assert!(!same_origin(&h), "{origin}");
        }
    }

    #[test]
    fn comparison_needs_every_byte() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}
