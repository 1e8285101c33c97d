//! Checks of the sections served by their own stages (auth, rate limits and plans,
//! cache, health checks, circuit breakers), and the typed forms start uses:
//! [`load_keys`] (every JWT and API key loaded, secrets read from the environment) and
//! [`limits`] (the rate-limit plans). A mistake in any of them fails at load, so
//! `ringgate check` refuses what start would refuse. TLS is in `tls.rs`.

use std::collections::HashMap;

use toml::Spanned;

use super::super::file::{
    self, FileAuth, FileCache, FileCircuitBreaker, FileHealthCheck, FilePlan, FileRateLimit,
    FileRouteRateLimit,
};
use super::super::{CircuitBreaker, HealthCheck, RouteRateLimit};
use super::{rules, ConfigError, Cx};
use crate::auth::{AuthConfigError, AuthEntry, AuthSettings};
use crate::ratelimit::{
    default_route_burst, max_route_burst, KeyKind, RateLimitConfig, RateLimitError, ROUTE_MAX_RPM,
};

/// `[plans.*]` in file order. No `plans` key at all: the reference plans.
pub(super) fn plans(
    cx: &Cx,
    raw: Option<std::collections::BTreeMap<Spanned<String>, FilePlan>>,
) -> Result<Vec<(String, FilePlan)>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(file::default_plans());
    };
    let mut plans: Vec<(Spanned<String>, FilePlan)> = raw.into_iter().collect();
    plans.sort_by_key(|(name, _)| name.span().start);
    for (name, plan) in &plans {
        if !rules::is_token(name.get_ref()) {
            return Err(ConfigError::BadPlanName {
                site: cx.at("plans", name),
            });
        }
        cx.positive(
            &format!("plans.{}.requests_per_minute", name.get_ref()),
            &plan.requests_per_minute,
        )?;
        for (what, v) in [
            ("daily_quota", &plan.daily_quota),
            ("monthly_quota", &plan.monthly_quota),
        ] {
            cx.at_most(
                &format!("plans.{}.{what}", name.get_ref()),
                v,
                crate::ratelimit::quota::MAX_QUOTA,
                "requests (0 = no quota)",
            )?;
        }
    }
    Ok(plans
        .into_iter()
        .map(|(name, plan)| (name.into_inner(), plan))
        .collect())
}

/// A plan name written at `key` must be one of `plans`.
pub(super) fn known_plan(
    cx: &Cx,
    key: &str,
    name: &Spanned<String>,
    plans: &[(String, FilePlan)],
) -> Result<(), ConfigError> {
    if plans.iter().any(|(p, _)| p == name.get_ref()) {
        return Ok(());
    }
    Err(ConfigError::UnknownPlan {
        site: cx.at(key, name),
        known: rules::list(plans.iter().map(|(p, _)| p.as_str())),
    })
}

pub(super) fn rate_limit(
    cx: &Cx,
    r: &FileRateLimit,
    plans: &[(String, FilePlan)],
) -> Result<(), ConfigError> {
    known_plan(cx, "rate_limit.default_plan", &r.default_plan, plans)?;
    if !rules::is_rate_limit_key(r.key.get_ref()) {
        return Err(ConfigError::BadRateLimitKey {
            site: cx.at("rate_limit.key", &r.key),
        });
    }
    cx.millis("rate_limit.sync_interval_ms", &r.sync_interval_ms)?;
    Ok(())
}

/// A route's own `rate_limit` (at `key`, the route's key path): the typed limit, or
/// `None` when it is switched off and names no rate. Every key given is checked, even
/// with `enabled = false`, so that switching the limit on later cannot fail.
pub(super) fn route_rate_limit(
    cx: &Cx,
    key: &str,
    raw: Option<&Spanned<FileRouteRateLimit>>,
) -> Result<Option<RouteRateLimit>, ConfigError> {
    let Some(table) = raw else {
        return Ok(None);
    };
    let (l, key) = (table.get_ref(), format!("{key}.rate_limit"));
    let rpm_key = format!("{key}.requests_per_minute");
    let requests_per_minute = match &l.requests_per_minute {
        Some(rpm) => {
            cx.positive(&rpm_key, rpm)?;
            if *rpm.get_ref() > ROUTE_MAX_RPM {
                return Err(ConfigError::TooLarge {
                    site: cx.at(rpm_key, rpm),
                    max: format!("{ROUTE_MAX_RPM} (a million a second)"),
                });
            }
            *rpm.get_ref()
        }
        None if !l.enabled => 0,
        None => {
            return Err(ConfigError::RateLimit {
                site: cx.site(rpm_key, table.span(), String::new()),
                reason: "required: the sustained rate of the route's own limit \
                         (or enabled = false to use the plan's)"
                    .to_owned(),
            })
        }
    };
    let burst = match &l.burst {
        Some(b) => {
            let burst_key = format!("{key}.burst");
            if *b.get_ref() == 0 {
                return Err(ConfigError::RateLimit {
                    site: cx.at(burst_key, b),
                    reason: "must be at least 1: the requests a full bucket admits at \
                             once (1 = strictly paced)"
                        .to_owned(),
                });
            }
            // Without a rate (a limit switched off) there is no maximum to check.
            let max = max_route_burst(requests_per_minute);
            if requests_per_minute > 0 && *b.get_ref() > max {
                return Err(ConfigError::TooLarge {
                    site: cx.at(burst_key, b),
                    max: format!("{max} (a day's worth of requests_per_minute)"),
                });
            }
            *b.get_ref()
        }
        None => default_route_burst(requests_per_minute),
    };
    let key_kind = match &l.key_by {
        Some(k) => KeyKind::parse(k.get_ref()).ok_or_else(|| ConfigError::BadRateLimitKey {
            site: cx.at(format!("{key}.key_by"), k),
        })?,
        None => KeyKind::User,
    };
    if requests_per_minute == 0 {
        return Ok(None);
    }
    Ok(Some(RouteRateLimit {
        enabled: l.enabled,
        requests_per_minute,
        burst,
        key: key_kind,
    }))
}

pub(super) fn auth(cx: &Cx, a: &FileAuth, plans: &[(String, FilePlan)]) -> Result<(), ConfigError> {
    cx.secs("auth.jwt.leeway_s", &a.jwt.leeway_s, true)?;
    let mut kids: HashMap<&str, usize> = HashMap::new();
    for (i, k) in a.jwt.keys.iter().enumerate() {
        let key = format!("auth.jwt.keys[{i}]");
        if let Some(kid) = &k.kid {
            if let Some(&first_line) = kids.get(kid.get_ref().as_str()) {
                return Err(ConfigError::DuplicateJwtKid {
                    site: cx.at(format!("{key}.kid"), kid),
                    first_line,
                });
            }
            kids.insert(kid.get_ref(), cx.line_of(kid));
        }
        if let Some(alg) = &k.algorithm {
            if !rules::JWT_ALGORITHMS.contains(&alg.get_ref().as_str()) {
                return Err(ConfigError::BadJwtAlgorithm {
                    site: cx.at(format!("{key}.algorithm"), alg),
                });
            }
        }
        jwt_key_source(cx, &key, k)?;
    }
    let api = &a.api_keys;
    cx.header_name("auth.api_keys.header", &api.header)?;
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut digests: HashMap<String, usize> = HashMap::new();
    for (i, k) in api.keys.iter().enumerate() {
        let id = k.id.get_ref();
        if id.is_empty() {
            return Err(ConfigError::EmptyName {
                site: cx.at(format!("auth.api_keys.keys[{i}].id"), &k.id),
            });
        }
        let key = format!("auth.api_keys.keys.{id:?}");
        if let Some(&first_line) = ids.get(id.as_str()) {
            return Err(ConfigError::DuplicateApiKey {
                site: cx.at(format!("{key}.id"), &k.id),
                first_line,
            });
        }
        ids.insert(id, cx.line_of(&k.id));
        let digest = k.sha256.get_ref();
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ConfigError::BadSha256 {
                site: cx.at(format!("{key}.sha256"), &k.sha256),
            });
        }
        // Two entries for one key would make its identity depend on file order.
        if let Some(&first_line) = digests.get(&digest.to_ascii_lowercase()) {
            return Err(ConfigError::DuplicateApiKey {
                site: cx.at(format!("{key}.sha256"), &k.sha256),
                first_line,
            });
        }
        digests.insert(digest.to_ascii_lowercase(), cx.line_of(&k.sha256));
        if let Some(plan) = &k.plan {
            known_plan(cx, &format!("{key}.plan"), plan, plans)?;
        }
    }
    Ok(())
}

/// Exactly one source of key material, and the one that fits the algorithm: an HMAC
/// key read as a public key (or the reverse) is the RS256->HS256 confusion attack.
fn jwt_key_source(cx: &Cx, key: &str, k: &file::FileJwtKey) -> Result<(), ConfigError> {
    let sources = [
        ("secret_env", &k.secret_env),
        ("public_key_file", &k.public_key_file),
        ("jwks_file", &k.jwks_file),
    ];
    let given: Vec<_> = sources
        .iter()
        .filter_map(|(n, v)| v.as_ref().map(|v| (*n, v)))
        .collect();
    // Point at the most telling value there is.
    let anchor = given
        .first()
        .map(|(n, v)| (format!("{key}.{n}"), *v))
        .or_else(|| {
            k.algorithm
                .as_ref()
                .map(|a| (format!("{key}.algorithm"), a))
        })
        .or_else(|| k.kid.as_ref().map(|a| (format!("{key}.kid"), a)));
    let err = |reason| {
        let site = match &anchor {
            Some((akey, v)) => cx.at(akey.clone(), v),
            None => cx.site(key, 0..0, String::new()),
        };
        Err(ConfigError::BadJwtKeySource { site, reason })
    };
    if given.len() != 1 {
        return err("give exactly one of secret_env, public_key_file, jwks_file");
    }
    let (source, value) = given[0];
    if value.get_ref().trim().is_empty() {
        return err("must not be empty");
    }
    let hmac = match &k.algorithm {
        Some(a) => a.get_ref().starts_with("HS"),
        None if source == "jwks_file" => return Ok(()),
        None => return err("algorithm is required (only a jwks_file names its own)"),
    };
    match (hmac, source) {
        (true, "secret_env") | (false, "public_key_file" | "jwks_file") => Ok(()),
        (true, _) => err("an HS* key is a shared secret: use secret_env"),
        (false, _) => {
            err("RS*/PS*/ES*/EdDSA keys are public keys: use public_key_file or jwks_file")
        }
    }
}

pub(super) fn cache(cx: &Cx, c: &FileCache) -> Result<(), ConfigError> {
    if !c.enabled {
        return Ok(());
    }
    let max = cx.positive("cache.max_bytes", &c.max_bytes)?;
    cx.positive("cache.max_object_bytes", &c.max_object_bytes)?;
    if *c.max_object_bytes.get_ref() > max {
        return Err(ConfigError::CacheObjectTooLarge {
            site: cx.at("cache.max_object_bytes", &c.max_object_bytes),
            max_bytes: max,
        });
    }
    Ok(())
}

pub(super) fn health_check(
    cx: &Cx,
    key: &str,
    h: &FileHealthCheck,
) -> Result<HealthCheck, ConfigError> {
    rules::check_path(h.path.get_ref()).map_err(|reason| ConfigError::BadPath {
        site: cx.at(format!("{key}.path"), &h.path),
        reason,
    })?;
    Ok(HealthCheck {
        path: h.path.get_ref().clone(),
        interval: cx.millis(&format!("{key}.interval_ms"), &h.interval_ms)?,
        timeout: cx.millis(&format!("{key}.timeout_ms"), &h.timeout_ms)?,
        healthy_threshold: cx
            .positive(&format!("{key}.healthy_threshold"), &h.healthy_threshold)?,
        unhealthy_threshold: cx.positive(
            &format!("{key}.unhealthy_threshold"),
            &h.unhealthy_threshold,
        )?,
    })
}

pub(super) fn circuit_breaker(
    cx: &Cx,
    key: &str,
    c: &FileCircuitBreaker,
) -> Result<CircuitBreaker, ConfigError> {
    Ok(CircuitBreaker {
        failure_threshold: cx
            .positive(&format!("{key}.failure_threshold"), &c.failure_threshold)?,
        open: cx.millis(&format!("{key}.open_ms"), &c.open_ms)?,
        half_open_successes: cx.positive(
            &format!("{key}.half_open_successes"),
            &c.half_open_successes,
        )?,
    })
}

/// `[rate_limit]` and `[plans.*]` in the typed form the workers use.
pub(super) fn limits(
    cx: &Cx,
    r: &FileRateLimit,
    plans: &[(String, FilePlan)],
) -> Result<RateLimitConfig, ConfigError> {
    RateLimitConfig::from_file(r, plans).map_err(|e| {
        let site = match &e {
            RateLimitError::BurstTooLarge(name) | RateLimitError::ZeroRate(name) => {
                plans.iter().find(|(p, _)| p == name).map(|(_, p)| {
                    let key = format!("plans.{name}.burst");
                    let mut site = cx.at(key, &p.requests_per_minute);
                    site.value = p.burst.to_string();
                    site
                })
            }
            _ => None,
        };
        let site = site.unwrap_or_else(|| cx.at("rate_limit.default_plan", &r.default_plan));
        ConfigError::RateLimit {
            site,
            reason: e.to_string(),
        }
    })
}

/// Every key of `[auth]` loaded, as start serves with them: HMAC secrets from the
/// environment variables named by `secret_env`, public keys and JWK Sets from their
/// files. The error points at the entry's source key; it names the variable or file,
/// never key material.
pub(super) fn load_keys(cx: &Cx, a: &FileAuth) -> Result<AuthSettings, ConfigError> {
    AuthSettings::load_located(a, cx.env).map_err(|e| {
        let site = match e.entry {
            AuthEntry::JwtKey(i) => {
                let k = &a.jwt.keys[i];
                let key = format!("auth.jwt.keys[{i}]");
                let at = [
                    ("secret_env", &k.secret_env),
                    ("public_key_file", &k.public_key_file),
                    ("jwks_file", &k.jwks_file),
                    ("algorithm", &k.algorithm),
                    ("kid", &k.kid),
                ]
                .into_iter()
                .find_map(|(n, v)| Some((n, v.as_ref()?)));
                match at {
                    Some((n, v)) => cx.at(format!("{key}.{n}"), v),
                    None => cx.site(key, 0..0, String::new()),
                }
            }
            AuthEntry::ApiKey(i) => {
                let k = &a.api_keys.keys[i];
                cx.at(format!("auth.api_keys.keys.{:?}.id", k.id.get_ref()), &k.id)
            }
            AuthEntry::Section => cx.site("auth", 0..0, String::new()),
        };
        let weak_secret_env = match &e.error {
            AuthConfigError::WeakSecret { var, .. } => Some(var.clone()),
            _ => None,
        };
        ConfigError::AuthKey {
            site,
            reason: e.reason(),
            weak_secret_env,
        }
    })
}
