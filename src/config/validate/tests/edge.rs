//! `path_template`, `content_type`, `rewrite`, `respond` and upstream
//! `request_headers` (templates): accepted shapes, and errors naming key, line and
//! variable.

use super::super::super::{PathMatch, RouteTarget};
use super::*;

fn upstream_with(headers: &str, routes: &str) -> String {
    format!("[server]\nlisten = [\"127.0.0.1:8080\"]\n[[upstreams]]\nname = \"a\"\nservers = [\"127.0.0.1:9001\"]\nrequest_headers = {headers}\n[[routes]]\n{routes}")
}

#[test]
fn edge_keys_accepted() {
    let cfg = ok(&route(
        "id = \"r\"\npath_template = \"/api/profile/{user_id}\"\ncontent_type = [\"video/*\", \"Application/JSON\"]\nrewrite = { pattern = \"^/api/(.*)$\", replace = \"/v2/$1\" }\nupstream = \"a\"\n[[routes]]\nid = \"ok\"\npath_exact = \"/ping\"\nrespond = { status = 200, body = \"OK\", content_type = \"text/plain\" }\n",
    ));
    let r = &cfg.routes[0];
    assert!(matches!(&r.path, PathMatch::Template(t) if t.has("user_id")));
    assert_eq!(r.content_type.len(), 2);
    assert_eq!(r.rewrite.as_ref().unwrap().replace(), "/v2/$1");
    let RouteTarget::Respond(resp) = &cfg.routes[1].target else {
        panic!("not a respond route")
    };
    assert_eq!((resp.status, &resp.body[..]), (200, &b"OK"[..]));
    // Defaults: 200, empty body, text/plain.
    let cfg = ok(&route("id = \"r\"\npath_prefix = \"/\"\nrespond = {}\n"));
    let RouteTarget::Respond(resp) = &cfg.routes[0].target else {
        panic!()
    };
    assert_eq!(resp.status, 200);
}

#[test]
fn two_path_kinds() {
    let e = bad(
        &route("id = \"r\"\npath_prefix = \"/\"\npath_template = \"/{x}\"\nupstream = \"a\"\n"),
        9,
        &["routes.\"r\".path_template", "not both"],
    );
    assert!(matches!(e, ConfigError::PathConflict { .. }));
    bad(
        &route("id = \"r\"\npath_template = \"/a/x{y}\"\nupstream = \"a\"\n"),
        8,
        &["routes.\"r\".path_template", "{name}"],
    );
}

#[test]
fn respond_is_a_target() {
    let e = bad(
        &route("id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\nrespond = { body = \"x\" }\n"),
        10,
        &["routes.\"r\".respond", "respond"],
    );
    assert!(matches!(e, ConfigError::TargetConflict { .. }));
    bad(
        &route("id = \"r\"\npath_prefix = \"/\"\nrespond = { status = 99 }\n"),
        9,
        &["routes.\"r\".respond.status = 99", "200 to 599"],
    );
    bad(
        &route("id = \"r\"\npath_prefix = \"/\"\nrespond = { status = 204, body = \"x\" }\n"),
        9,
        &["respond.status", "no body"],
    );
}

#[test]
fn bad_rewrite_and_content_type() {
    let e = bad(
        &route("id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\nrewrite = { pattern = \"^/v1/(\", replace = \"/api/$1\" }\n"),
        10,
        &["routes.\"r\".rewrite.pattern = \"^/v1/(\"", "unclosed"],
    );
    assert!(matches!(e, ConfigError::BadRewrite { .. }));
    bad(
        &route("id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\nrewrite = { pattern = \"^/v1/(.*)$\", replace = \"/api/$2\" }\n"),
        10,
        &["routes.\"r\".rewrite.replace", "$2", "no such group"],
    );
    bad(
        &route("id = \"r\"\npath_prefix = \"/v1\"\nstrip_prefix = \"/v1\"\nupstream = \"a\"\nrewrite = { pattern = \"^/v1/(.*)$\", replace = \"/$1\" }\n"),
        9,
        &["routes.\"r\".strip_prefix", "not both"],
    );
    bad(
        &route("id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\ncontent_type = [\"video/*\", \"text/plain; charset=utf-8\"]\n"),
        10,
        &["routes.\"r\".content_type[1]", "parameters"],
    );
    bad(
        &route("id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\ncontent_type = []\n"),
        10,
        &["routes.\"r\".content_type", "empty"],
    );
}

#[test]
fn template_errors_name_key_line_and_variable() {
    let e = bad(
        &upstream_with(
            "{ \"X-A\" = \"${nope}\" }",
            "id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\n",
        ),
        6,
        &[
            "upstreams.\"a\".request_headers.\"X-A\"",
            "${nope}",
            "unknown variable",
        ],
    );
    assert!(matches!(e, ConfigError::BadTemplate { .. }));
    bad(
        &upstream_with(
            "{ \"X-A\" = \"${user\" }",
            "id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\n",
        ),
        6,
        &["request_headers.\"X-A\"", "no closing"],
    );
    let unset = parse_and_validate_with(
        &upstream_with(
            "{ \"Authorization\" = \"Bearer ${env:NOT_SET_ANYWHERE}\" }",
            "id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\n",
        ),
        "test.toml",
        &|_| None,
    )
    .unwrap_err();
    assert_eq!(unset.line(), Some(6));
    let msg = unset.to_string();
    for needle in [
        "request_headers.\"Authorization\"",
        "${env:NOT_SET_ANYWHERE}",
        "not set",
    ] {
        assert!(msg.contains(needle), "{needle} not in {msg}");
    }
    // ${path:x} must be a segment of every route that sends there.
    bad(
        &upstream_with(
            "{ \"X-User\" = \"${path:user_id}\" }",
            "id = \"p\"\npath_template = \"/u/{id}\"\nupstream = \"a\"\n",
        ),
        6,
        &[
            "request_headers.\"X-User\"",
            "${path:user_id}",
            "route \"p\"",
            "no {user_id} segment",
        ],
    );
    bad(
        &upstream_with(
            "{ \"X-User\" = \"${path:user_id}\" }",
            "id = \"p\"\npath_prefix = \"/u\"\nupstream = \"a\"\n",
        ),
        6,
        &["${path:user_id}", "no path_template"],
    );
    ok(&upstream_with(
        "{ \"X-User\" = \"${path:user_id}\" }",
        "id = \"p\"\npath_template = \"/u/{user_id}\"\nupstream = \"a\"\n",
    ));
}

#[test]
fn env_values_never_in_errors_or_debug() {
    let env = |name: &str| (name == "EDGE_SECRET").then(|| "s3cr3t-value".into());
    let text = upstream_with(
        "{ \"Authorization\" = \"Bearer ${env:EDGE_SECRET}\", \"X-B\" = \"${bogus}\" }",
        "id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\n",
    );
    let e = parse_and_validate_with(&text, "t.toml", &env).unwrap_err();
    assert!(!e.to_string().contains("s3cr3t"), "{e}");
    let text = upstream_with(
        "{ \"Authorization\" = \"Bearer ${env:EDGE_SECRET}\" }",
        "id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\n",
    );
    let cfg = parse_and_validate_with(&text, "t.toml", &env).unwrap();
    assert!(!format!("{:?}", cfg.upstreams).contains("s3cr3t"));
    let shown = summary(&cfg);
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(
        shown.contains("adds: Authorization: Bearer ${env:EDGE_SECRET}"),
        "{shown}"
    );
}

#[test]
fn upstream_headers_cannot_frame_the_request() {
    for name in ["Content-Length", "Transfer-Encoding", "Host", "Connection"] {
        bad(
            &upstream_with(
                &format!("{{ \"{name}\" = \"5\" }}"),
                "id = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\n",
            ),
            6,
            &[
                &format!("request_headers.\"{name}\""),
                "written by the gateway",
            ],
        );
    }
}
