//! Template values (`${header:...}`, `${env:...}` ... see [`crate::http::template`])
//! parsed at load: [`Cx::template`] turns a spanned string into a [`Template`] or a
//! [`ConfigError::BadTemplate`] naming the key, the line and the variable, and
//! [`Cx::path_vars`] checks that every `${path:x}` names a `{x}` segment of the
//! route's `path_template`. Environment variables are read through the same `env` as
//! `secret_env` (a test's stand-in, or the process environment).

use toml::Spanned;

use super::{ConfigError, Cx};
use crate::http::path_template::PathTemplate;
use crate::http::template::{Template, Var};

impl Cx<'_> {
    /// Parse the template at `key`; `${env:...}` read now, once.
    pub(super) fn template(&self, key: &str, v: &Spanned<String>) -> Result<Template, ConfigError> {
        Template::parse_with(v.get_ref(), self.env).map_err(|e| ConfigError::BadTemplate {
            site: self.at(key, v),
            reason: e.to_string(),
        })
    }

    /// Every `${path:x}` of `t` (written at `key`) must be a `{x}` segment of `path`
    /// (the route's path_template; `None` when it has none). `route` names the route
    /// when the template is not its own (an upstream's request_headers).
    pub(super) fn path_vars(
        &self,
        key: &str,
        v: &Spanned<String>,
        t: &Template,
        path: Option<&PathTemplate>,
        route: Option<&str>,
    ) -> Result<(), ConfigError> {
        for var in t.vars() {
            let Var::Path(name) = var else { continue };
            if path.is_some_and(|p| p.has(name)) {
                continue;
            }
            let whose = match route {
                Some(id) => format!("route {id:?}, which sends to this upstream,"),
                None => "the route".to_owned(),
            };
            let reason = match path {
                Some(p) => format!(
                    "{var}: {whose} has no {{{name}}} segment in its path_template {:?}",
                    p.as_str()
                ),
                None => format!(
                    "{var}: {whose} has no path_template (path_template = \"/.../{{{name}}}\")"
                ),
            };
            return Err(ConfigError::BadTemplate {
                site: self.at(key, v),
                reason,
            });
        }
        Ok(())
    }
}
