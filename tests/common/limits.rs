//! What a client sees of a rate limit, for `tests/ratelimit.rs` and
//! `tests/route_limit.rs`: a [`Limit`] (a plan, or a route's own limit) and assertions on
//! the rate-limit headers, the 429 and how many requests a bucket admits.

use super::{Client, Req, Response};

pub const RATE_HEADERS: [&str; 5] = [
    "ratelimit-policy",
    "ratelimit",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
];

/// A limit as the client sees it: the policy named in the headers, the rate, and how
/// many requests a full bucket admits.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub policy: &'static str,
    pub rpm: u64,
    pub capacity: u64,
}

impl Limit {
    /// `[plans.NAME]` with this rate and burst: a full bucket admits `burst + 1`.
    pub const fn plan(name: &'static str, rpm: u64, burst: u64) -> Limit {
        Limit {
            policy: name,
            rpm,
            capacity: burst + 1,
        }
    }

    /// A route's own limit (`policy` = "route:ID"): a full bucket admits `burst`.
    pub const fn route(policy: &'static str, rpm: u64, burst: u64) -> Limit {
        Limit {
            policy,
            rpm,
            capacity: burst,
        }
    }

    /// The plan table of a plan limit.
    pub fn plan_toml(&self) -> String {
        format!(
            "[plans.{}]\nrequests_per_minute = {}\nburst = {}\n",
            self.policy,
            self.rpm,
            self.capacity - 1
        )
    }

    /// Seconds between two requests at the sustained rate.
    pub fn interval(&self) -> u64 {
        60 / self.rpm
    }

    /// The message of the 429 JSON body.
    pub fn message(&self) -> String {
        match self.policy.strip_prefix("route:") {
            Some(route) => format!("rate limit of route \"{route}\" exceeded"),
            None => format!("rate limit of plan \"{}\" exceeded", self.policy),
        }
    }
}

pub fn bearer(path: &str, token: &str) -> Req {
    Req::get(path).header("Authorization", &format!("Bearer {token}"))
}

/// A header's value as an integer.
#[track_caller]
pub fn number(resp: &Response, name: &str) -> u64 {
    let v = resp
        .header(name)
        .unwrap_or_else(|| panic!("no {name}: {}", resp.head));
    v.parse()
        .unwrap_or_else(|_| panic!("{name}: {v:?} is not an integer"))
}

/// `RateLimit: "<policy>";r=<n>;t=<n>` as (policy, r, t).
#[track_caller]
pub fn ratelimit(resp: &Response) -> (String, u64, u64) {
    let v = resp
        .header("ratelimit")
        .unwrap_or_else(|| panic!("no RateLimit: {}", resp.head));
    let mut parts = v.split(';');
    let plan = parts.next().unwrap();
    assert!(
        plan.len() >= 2 && plan.starts_with('"') && plan.ends_with('"'),
        "{v}"
    );
    let mut param = |key: &str| -> u64 {
        let p = parts
            .next()
            .unwrap_or_else(|| panic!("RateLimit {v:?} lacks {key}"));
        let n = p.strip_prefix(key).and_then(|n| n.strip_prefix('='));
        n.and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("RateLimit {v:?}: bad {key}"))
    };
    let (r, t) = (param("r"), param("t"));
    assert!(parts.next().is_none(), "RateLimit {v:?}");
    (plan[1..plan.len() - 1].to_owned(), r, t)
}

/// The rate-limit headers of a response limited by `limit`: each present once, the
/// policy exact, the numbers consistent. Returns (remaining, reset seconds).
#[track_caller]
pub fn assert_limit_headers(resp: &Response, limit: Limit) -> (u64, u64) {
    for h in RATE_HEADERS {
        assert_eq!(resp.all(h).len(), 1, "{h}: {}", resp.head);
    }
    let policy = format!("\"{}\";q={};w=60", limit.policy, limit.rpm);
    assert_eq!(resp.header("ratelimit-policy"), Some(policy.as_str()));
    let (name, r, t) = ratelimit(resp);
    assert_eq!(name, limit.policy, "{}", resp.head);
    assert_eq!(number(resp, "x-ratelimit-limit"), limit.rpm);
    assert_eq!(number(resp, "x-ratelimit-remaining"), r, "{}", resp.head);
    assert_eq!(number(resp, "x-ratelimit-reset"), t, "{}", resp.head);
    (r, t)
}

#[track_caller]
pub fn assert_no_limit_headers(resp: &Response) {
    for h in RATE_HEADERS {
        assert!(!resp.has(h), "{h} on an unlimited response: {}", resp.head);
    }
}

/// A 429 under `limit`: JSON body naming it, and `Retry-After` in whole seconds, at
/// least 1 and at most one emission interval (the limits in these tests never owe
/// more). Returns Retry-After.
#[track_caller]
pub fn assert_429(resp: &Response, limit: Limit) -> u64 {
    assert_eq!(resp.assert_json_error(429), "too_many_requests");
    assert_eq!(resp.json()["message"], limit.message());
    assert_eq!(resp.all("retry-after").len(), 1, "{}", resp.head);
    let retry = number(resp, "retry-after");
    assert!(
        (1..=limit.interval()).contains(&retry),
        "Retry-After {retry}: {}",
        resp.head
    );
    retry
}

/// Send `req` on `c` until it is refused (at most `max` times): the admitted responses
/// (each a 200) and the 429.
#[track_caller]
pub fn until_refused(c: &mut Client, req: &Req, max: usize) -> (Vec<Response>, Response) {
    let mut admitted = Vec::new();
    for _ in 0..max {
        let resp = c.request(req);
        match resp.status {
            200 => admitted.push(resp),
            429 => return (admitted, resp),
            _ => panic!("unexpected response: {resp:#?}"),
        }
    }
    panic!("{} requests admitted, none refused", admitted.len());
}

/// Exactly `limit`'s capacity admitted, then a 429 under `limit`.
#[track_caller]
pub fn assert_exhausts(c: &mut Client, req: &Req, limit: Limit) {
    let (admitted, refused) = until_refused(c, req, 20);
    assert_eq!(
        admitted.len() as u64,
        limit.capacity,
        "{} {}",
        req.method,
        req.target
    );
    for resp in &admitted {
        assert_limit_headers(resp, limit);
    }
    assert_429(&refused, limit);
}

/// One request that must be admitted under `limit`.
#[track_caller]
pub fn assert_admitted(c: &mut Client, req: &Req, limit: Limit) {
    let resp = c.request(req);
    assert_eq!(resp.status, 200, "{resp:#?}");
    assert_limit_headers(&resp, limit);
}

/// One request that must be refused under `limit` (its bucket is already empty).
#[track_caller]
pub fn assert_refused(c: &mut Client, req: &Req, limit: Limit) {
    let resp = c.request(req);
    assert_429(&resp, limit);
}
