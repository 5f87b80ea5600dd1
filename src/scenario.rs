//! The TOML scenario: what the user wrote, validated into one [`Plan`].
//!
//! Every error names the file, line and column, the key, what was expected
//! and what to do. Unknown keys are rejected. Every key is documented in
//! `docs/scenarios.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::api::{self, ServerTimeSource};
use crate::load::Distribution;
use crate::load::{ArrivalProcess, ClosedModel, LoadModel, OpenModel, Ramp, RateSchedule, Stage};
use crate::secret::Secret;
use crate::target;

/// A scenario that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScenarioError {}

// ---------------------------------------------------------------------------
// Raw input: what the TOML file holds.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: Option<Spanned<String>>,
    target: TargetSection,
    #[serde(default)]
    login: LoginSection,
    #[serde(rename = "request", default)]
    requests: Vec<RequestSection>,
    load: Spanned<LoadSection>,
    #[serde(default)]
    timeouts: TimeoutSection,
    #[serde(default)]
    output: OutputSection,
    #[serde(default)]
    checks: ChecksSection,
    server_time: Option<Spanned<ServerTimeSection>>,
    #[serde(default)]
    response: ResponseSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerTimeSection {
    source: Option<Spanned<String>>,
    pointer: Option<Spanned<String>>,
    unit: Option<api::TimeUnit>,
    metric: Option<String>,
    header: Option<Spanned<String>>,
    clock_utc_offset: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseSection {
    success_statuses: Option<Spanned<Vec<i64>>>,
    success_field: Option<bool>,
    max_body_mib: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetSection {
    base_url: Spanned<String>,
    // Not `Spanned`: a table written only through dotted headers such as
    // [target.embedded.faults] has no span of its own.
    embedded: Option<EmbeddedSection>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbeddedSection {
    token_lifetime_s: Option<Spanned<f64>>,
    service_time: Option<Spanned<Distribution>>,
    #[serde(default)]
    endpoints: BTreeMap<Spanned<String>, Spanned<Distribution>>,
    stall: Option<Spanned<StallSection>>,
    /// Fault injection and test behaviours; docs/reliability.md lists them.
    /// Not `Spanned`: toml cannot give a span to a table that dotted keys
    /// create, and rejects `Spanned` there.
    faults: Option<target::Faults>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StallSection {
    every_s: Spanned<f64>,
    duration_ms: Spanned<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LoginSection {
    path: Spanned<String>,
    username_field: String,
    password_field: String,
    token_pointer: Spanned<String>,
    refresh_before_expiry_s: Spanned<f64>,
    credentials: Option<Spanned<CredentialsSection>>,
    max_logins_per_s: Option<Spanned<f64>>,
}

impl Default for LoginSection {
    fn default() -> Self {
        LoginSection {
            path: Spanned::new(0..0, "/api/auth/login".into()),
            username_field: "email".into(),
            password_field: "password".into(),
            token_pointer: Spanned::new(0..0, "/data/token".into()),
            refresh_before_expiry_s: Spanned::new(0..0, 30.0),
            credentials: None,
            max_logins_per_s: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsSection {
    csv: Option<String>,
    username_env: Option<String>,
    password_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestSection {
    name: Spanned<String>,
    #[serde(default = "default_method")]
    method: Spanned<String>,
    path: Spanned<String>,
    body: Option<toml::Value>,
    #[serde(default = "default_weight")]
    weight: Spanned<i64>,
    server_time: Option<Spanned<ServerTimeSection>>,
}

fn default_method() -> Spanned<String> {
    Spanned::new(0..0, "GET".into())
}

fn default_weight() -> Spanned<i64> {
    Spanned::new(0..0, 1)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadSection {
    model: Spanned<String>,
    users: Option<Spanned<i64>>,
    duration_s: Option<Spanned<f64>>,
    // Closed model.
    pacing_ms: Option<Spanned<f64>>,
    ramp_up_s: Option<Spanned<f64>>,
    ramp_down_s: Option<Spanned<f64>>,
    think_time: Option<Spanned<Distribution>>,
    rate_cap_per_s: Option<Spanned<f64>>,
    user_rate_cap_per_s: Option<Spanned<f64>>,
    // Open model.
    rate_per_s: Option<Spanned<f64>>,
    #[serde(default)]
    stages: Vec<Spanned<StageSection>>,
    max_users: Option<Spanned<i64>>,
    arrivals: Option<Spanned<String>>,
    seed: Option<u64>,
    max_queue_wait_s: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageSection {
    duration_s: Spanned<f64>,
    rate_per_s: Spanned<f64>,
    #[serde(default)]
    ramp: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TimeoutSection {
    request_s: Spanned<f64>,
    connect_s: Spanned<f64>,
}

impl Default for TimeoutSection {
    fn default() -> Self {
        TimeoutSection {
            request_s: Spanned::new(0..0, 30.0),
            connect_s: Spanned::new(0..0, 5.0),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct OutputSection {
    dir: String,
}

impl Default for OutputSection {
    fn default() -> Self {
        OutputSection {
            dir: "reports".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChecksSection {
    max_error_percent: Option<Spanned<f64>>,
    max_client_p99_ms: Option<Spanned<f64>>,
}

// ---------------------------------------------------------------------------
// The resolved plan: the only value the engine sees.

/// Where requests go.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetPlan {
    /// A server at this base URL (scheme, host and port, no trailing slash).
    Url(String),
    /// The embedded demo target, started on a free loopback port for the run.
    Embedded(Box<target::Config>),
}

/// One user's login credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: Secret,
}

/// How virtual users log in.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginPlan {
    pub path: String,
    pub username_field: String,
    pub password_field: String,
    /// JSON pointer (RFC 6901) to the token in the login response.
    pub token_pointer: String,
    /// Log in again this long before the token's `exp`, capped at a tenth of
    /// the token's lifetime so short-lived tokens are not renewed on every
    /// request. Zero turns early refresh off (log in again only after a 401).
    pub refresh_before_expiry: Duration,
    /// Used round-robin: user `i` logs in as `credentials[i % len]`.
    pub credentials: Vec<Credential>,
    /// A limit on login attempts per second over all users, so that
    /// thousands of users do not storm the login endpoint.
    pub max_logins_per_s: Option<f64>,
}

/// One request of the mix.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestPlan {
    pub name: String,
    pub method: http::Method,
    pub path: String,
    /// Serialised JSON body, sent with `Content-Type: application/json`.
    pub body: Option<Vec<u8>>,
    pub weight: u32,
    /// Where this request's server time is read; the scenario's when `None`.
    pub server_time: Option<ServerTimeSource>,
}

/// Which responses count as successful.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseRules {
    /// HTTP statuses that can succeed; `None` means any 2xx.
    pub success_statuses: Option<Vec<u16>>,
    /// Whether `"success": false` in the body makes an application error.
    pub success_field: bool,
    /// The largest response body read, before and after decoding; a larger
    /// one is a transport error.
    pub max_body_bytes: usize,
}

/// The default of `response.max_body_mib`.
pub const DEFAULT_MAX_BODY_MIB: f64 = 32.0;

impl Default for ResponseRules {
    fn default() -> Self {
        ResponseRules {
            success_statuses: None,
            success_field: true,
            max_body_bytes: (DEFAULT_MAX_BODY_MIB * 1024.0 * 1024.0) as usize,
        }
    }
}

/// Pass/fail rules applied to the whole run; failures give exit code 1.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Checks {
    pub max_error_percent: Option<f64>,
    pub max_client_p99_ms: Option<f64>,
}

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    pub source: PathBuf,
    /// The scenario, re-serialised with the values of secret-looking keys
    /// replaced, kept for the run journal. Credentials are never in it: they
    /// come from a CSV file or the environment.
    pub source_text: String,
    pub target: TargetPlan,
    pub login: LoginPlan,
    pub requests: Vec<RequestPlan>,
    pub load: LoadModel,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub output_dir: PathBuf,
    pub checks: Checks,
    /// Where the server reports its time, unless a request overrides it.
    pub server_time: ServerTimeSource,
    /// The zone of `apiCost.start` and `finish`; `None` assumes the client's local zone.
    pub server_clock_utc_offset: Option<chrono::FixedOffset>,
    pub response: ResponseRules,
    /// Accept any TLS certificate. Off by default; the run warns when on.
    pub insecure_skip_tls_verify: bool,
    /// Problems worth telling the user that do not stop the run.
    pub warnings: Vec<String>,
}

impl Plan {
    /// Loads and validates a scenario file. Relative paths inside it (the
    /// credentials CSV) resolve against the file's folder; the output folder
    /// resolves against the current directory.
    pub fn load(path: &Path) -> Result<Plan, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            let hint = if error.kind() == std::io::ErrorKind::InvalidData {
                "Save it as UTF-8 text."
            } else {
                "Check the path."
            };
            ScenarioError {
                message: format!(
                    "cannot read scenario file {}: {error}. {hint}",
                    path.display()
                ),
            }
        })?;
        Plan::parse(&text, path)
    }

    /// Validates scenario text; `path` is used for messages and relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Plan, ScenarioError> {
        let source = Source { path, text };
        let file: ScenarioFile =
            toml::from_str(text).map_err(|error| source.parse_error(&error))?;
        Resolver {
            source,
            without_credentials: false,
        }
        .resolve(file)
    }

    /// Validates scenario text without reading its credentials, for
    /// rebuilding the report of a run from its journal.
    pub fn parse_for_report(text: &str, path: &Path) -> Result<Plan, ScenarioError> {
        let source = Source { path, text };
        let file: ScenarioFile =
            toml::from_str(text).map_err(|error| source.parse_error(&error))?;
        Resolver {
            source,
            without_credentials: true,
        }
        .resolve(file)
    }
}

struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    /// `file:line:column` of a byte offset, both 1-based.
    fn location(&self, span: &Range<usize>) -> String {
        let offset = span.start.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rsplit('\n')
            .next()
            .map_or(0, |last| last.chars().count())
            + 1;
        format!("{}:{line}:{column}", self.path.display())
    }

    fn error(&self, span: &Range<usize>, message: impl fmt::Display) -> ScenarioError {
        let location = if span.is_empty() && span.start == 0 {
            self.path.display().to_string()
        } else {
            self.location(span)
        };
        ScenarioError {
            message: format!("{location}: {message}"),
        }
    }

    /// The key written on the line of `span`, for messages about its value.
    fn key_at(&self, span: &Range<usize>) -> Option<String> {
        let start = span.start.min(self.text.len());
        let line_start = self.text[..start].rfind('\n').map_or(0, |index| index + 1);
        let line = self.text[line_start..].lines().next()?;
        let (key, _) = line.split_once('=')?;
        let key = key.trim();
        let is_key = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        is_key.then(|| key.to_string())
    }

    fn parse_error(&self, error: &toml::de::Error) -> ScenarioError {
        let message = error.message().trim_end();
        let hint = if message.starts_with("unknown field") {
            " Check the spelling or remove the key; docs/scenarios.md lists every key."
        } else if message.starts_with("missing field") {
            " Add it; docs/scenarios.md describes it."
        } else if message.starts_with("invalid type") || message.contains("too large") {
            " Numbers are written without quotes, text in quotes; docs/scenarios.md gives each key's type."
        } else {
            " Check the TOML syntax near this position."
        };
        // TOML's own message often spans lines; one line reads better in a log.
        let message = message.lines().map(str::trim).collect::<Vec<_>>().join(" ");
        match error.span() {
            Some(span) => {
                // Messages about a field name it already; others are about a value.
                let names_key = message.contains("field `");
                let key = match self.key_at(&span) {
                    Some(key) if !names_key => format!("`{key}`: "),
                    _ => String::new(),
                };
                self.error(&span, format!("{key}{message}.{hint}"))
            }
            None => ScenarioError {
                message: format!("{}: {message}.{hint}", self.path.display()),
            },
        }
    }
}

struct Resolver<'a> {
    source: Source<'a>,
    /// Skip reading credentials: for rebuilding a report, which sends nothing.
    without_credentials: bool,
}

impl Resolver<'_> {
    fn resolve(&self, file: ScenarioFile) -> Result<Plan, ScenarioError> {
        let name = match &file.name {
            Some(name) => self.check_name(name)?,
            None => self.default_name(),
        };
        let target = self.resolve_target(&file.target)?;
        let login = self.resolve_login(&file.login, &target)?;
        let requests = self.resolve_requests(&file.requests)?;
        let load = self.resolve_load(&file.load)?;
        let (server_time, server_clock_utc_offset) = match &file.server_time {
            Some(section) => (
                self.server_time_source(section, "server_time")?,
                self.utc_offset(section.get_ref())?,
            ),
            None => (ServerTimeSource::default(), None),
        };
        let response = self.resolve_response(&file.response)?;
        let request_timeout =
            self.positive_seconds("timeouts.request_s", &file.timeouts.request_s)?;
        let connect_timeout =
            self.positive_seconds("timeouts.connect_s", &file.timeouts.connect_s)?;
        let checks = Checks {
            max_error_percent: self.optional_check(
                "checks.max_error_percent",
                &file.checks.max_error_percent,
                100.0,
            )?,
            max_client_p99_ms: self.optional_check(
                "checks.max_client_p99_ms",
                &file.checks.max_client_p99_ms,
                MAX_SECONDS * 1000.0,
            )?,
        };
        Ok(Plan {
            name,
            source: self.source.path.to_path_buf(),
            source_text: self.redacted_text(),
            target,
            login,
            requests,
            load,
            request_timeout,
            connect_timeout,
            output_dir: PathBuf::from(&file.output.dir),
            checks,
            server_time,
            server_clock_utc_offset,
            response,
            insecure_skip_tls_verify: file.target.insecure_skip_tls_verify,
            warnings: self.literal_secrets(),
        })
    }

    /// The scenario as TOML with every secret-looking value replaced.
    fn redacted_text(&self) -> String {
        let Ok(mut document) = self.source.text.parse::<toml::Table>() else {
            return String::new();
        };
        redact_secret_keys(&mut document);
        toml::to_string(&document).unwrap_or_default()
    }

    /// Warns about keys that look like secrets and hold literal text (in a
    /// request body, say). Credentials belong in a CSV file or the environment.
    fn literal_secrets(&self) -> Vec<String> {
        let Ok(document) = self.source.text.parse::<toml::Table>() else {
            return Vec::new();
        };
        let mut found = Vec::new();
        find_secret_keys(&toml::Value::Table(document), "", &mut found);
        found
            .into_iter()
            .map(|key| {
                format!(
                    "{}: `{key}` holds a literal secret. parallax keeps it out of its output, but the file does not: prefer login.credentials (a CSV file or environment variables).",
                    self.source.path.display()
                )
            })
            .collect()
    }

    fn server_time_source(
        &self,
        section: &Spanned<ServerTimeSection>,
        key: &str,
    ) -> Result<ServerTimeSource, ScenarioError> {
        let fields = section.get_ref();
        let span = section.span();
        let source = fields
            .source
            .as_ref()
            .map_or("body", |source| source.get_ref().as_str());
        let unexpected = |name: &str, present: bool| {
            present.then(|| {
                self.source.error(
                    &span,
                    format!("`{key}.{name}` does not apply to source = {source:?}. Remove it."),
                )
            })
        };
        let checks: &[(&str, bool)] = match source {
            "body" => &[
                ("metric", fields.metric.is_some()),
                ("header", fields.header.is_some()),
            ],
            "server_timing" => &[
                ("pointer", fields.pointer.is_some()),
                ("unit", fields.unit.is_some()),
                ("header", fields.header.is_some()),
            ],
            "header" => &[
                ("pointer", fields.pointer.is_some()),
                ("metric", fields.metric.is_some()),
            ],
            "none" => &[
                ("pointer", fields.pointer.is_some()),
                ("unit", fields.unit.is_some()),
                ("metric", fields.metric.is_some()),
                ("header", fields.header.is_some()),
            ],
            other => {
                let span = fields.source.as_ref().map_or(span.clone(), Spanned::span);
                return Err(self.source.error(
                    &span,
                    format!("`{key}.source` = {other:?} is not a server-time source. Use \"body\", \"server_timing\", \"header\" or \"none\"."),
                ));
            }
        };
        if let Some(error) = checks
            .iter()
            .find_map(|(name, present)| unexpected(name, *present))
        {
            return Err(error);
        }
        Ok(match source {
            "body" => {
                let pointer = match &fields.pointer {
                    Some(pointer) => {
                        ServerTimeSource::parse_pointer(pointer.get_ref()).map_err(|problem| {
                            self.source
                                .error(&pointer.span(), format!("`{key}.pointer`: {problem}."))
                        })?
                    }
                    None => vec!["apiCost".into(), "duration".into()],
                };
                ServerTimeSource::Body {
                    pointer,
                    unit: fields.unit.unwrap_or(api::TimeUnit::Seconds),
                }
            }
            "server_timing" => ServerTimeSource::ServerTiming {
                metric: fields.metric.clone(),
            },
            "header" => {
                let Some(header) = &fields.header else {
                    return Err(self.source.error(&span, format!("`{key}.header` is missing: name the response header that holds the time, e.g. header = \"X-Response-Time\".")));
                };
                let name = http::header::HeaderName::from_bytes(header.get_ref().trim().as_bytes())
                    .map_err(|_| {
                        self.source.error(
                            &header.span(),
                            format!(
                                "`{key}.header` = {:?} is not a valid header name.",
                                header.get_ref()
                            ),
                        )
                    })?;
                let Some(unit) = fields.unit else {
                    return Err(self.source.error(&span, format!("`{key}.unit` is missing: say what unit the header is in, \"s\", \"ms\" or \"us\".")));
                };
                ServerTimeSource::Header { name, unit }
            }
            _ => ServerTimeSource::None,
        })
    }

    fn utc_offset(
        &self,
        section: &ServerTimeSection,
    ) -> Result<Option<chrono::FixedOffset>, ScenarioError> {
        let Some(offset) = &section.clock_utc_offset else {
            return Ok(None);
        };
        let text = offset.get_ref().trim();
        let parsed = chrono::DateTime::parse_from_str(
            &format!("2000-01-01 00:00:00 {text}"),
            "%Y-%m-%d %H:%M:%S %:z",
        );
        match parsed {
            Ok(time) => Ok(Some(*time.offset())),
            Err(_) => Err(self.source.error(
                &offset.span(),
                format!("`server_time.clock_utc_offset` = {text:?} is not a UTC offset. Write it like \"+07:00\" or \"-05:30\"."),
            )),
        }
    }

    fn resolve_response(&self, section: &ResponseSection) -> Result<ResponseRules, ScenarioError> {
        let success_statuses = match &section.success_statuses {
            Some(statuses) => {
                let list = statuses.get_ref();
                if list.is_empty() || list.iter().any(|status| !(100..=599).contains(status)) {
                    return Err(self.source.error(
                        &statuses.span(),
                        format!("`response.success_statuses` must list HTTP statuses from 100 to 599, got {list:?}."),
                    ));
                }
                Some(list.iter().map(|status| *status as u16).collect())
            }
            None => None,
        };
        let max_body_bytes = match &section.max_body_mib {
            Some(mib) => {
                let value = *mib.get_ref();
                if !(value.is_finite() && (0.001..=4096.0).contains(&value)) {
                    return Err(self.source.error(
                        &mib.span(),
                        format!("`response.max_body_mib` must be from 0.001 to 4096 (MiB), got {value}."),
                    ));
                }
                (value * 1024.0 * 1024.0) as usize
            }
            None => ResponseRules::default().max_body_bytes,
        };
        Ok(ResponseRules {
            success_statuses,
            success_field: section.success_field.unwrap_or(true),
            max_body_bytes,
        })
    }

    fn default_name(&self) -> String {
        let stem = self
            .source
            .path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .unwrap_or("scenario");
        sanitize_name(stem)
    }

    fn check_name(&self, name: &Spanned<String>) -> Result<String, ScenarioError> {
        let value = name.get_ref();
        if value.trim().is_empty() {
            return Err(self.source.error(
                &name.span(),
                "`name` is empty. Give the scenario a short name, e.g. name = \"checkout\".",
            ));
        }
        Ok(sanitize_name(value))
    }

    fn resolve_target(&self, target: &TargetSection) -> Result<TargetPlan, ScenarioError> {
        let base_url = target.base_url.get_ref().trim();
        if base_url == "embedded" {
            let default = EmbeddedSection::default();
            let embedded = target.embedded.as_ref().unwrap_or(&default);
            return Ok(TargetPlan::Embedded(Box::new(
                self.resolve_embedded(embedded)?,
            )));
        }
        if target.embedded.is_some() {
            return Err(self.source.error(
                &target.base_url.span(),
                "`[target.embedded]` configures the embedded demo target, but `target.base_url` names another server. Remove the section, or set base_url = \"embedded\".",
            ));
        }
        let span = target.base_url.span();
        let url = url::Url::parse(base_url).map_err(|error| {
            self.source.error(
                &span,
                format!("`target.base_url` = {base_url:?} is not a valid URL ({error}). Write it as http://127.0.0.1:8080, or \"embedded\" for the demo target."),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(self.source.error(
                &span,
                format!("`target.base_url` = {base_url:?} must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:8080."),
            ));
        }
        Ok(TargetPlan::Url(base_url.trim_end_matches('/').to_string()))
    }

    fn resolve_embedded(
        &self,
        embedded: &EmbeddedSection,
    ) -> Result<target::Config, ScenarioError> {
        let mut config = target::Config::default();
        if let Some(lifetime) = &embedded.token_lifetime_s {
            let seconds = *lifetime.get_ref();
            // JWT `exp` is in whole seconds, so a fraction could not be honoured.
            if seconds.fract() != 0.0 || !(1.0..=MAX_SECONDS).contains(&seconds) {
                return Err(self.source.error(
                    &lifetime.span(),
                    format!("`target.embedded.token_lifetime_s` must be a whole number of seconds from 1 to {MAX_SECONDS}, got {seconds}."),
                ));
            }
            config.token_lifetime = Duration::from_secs(seconds as u64);
        }
        if let Some(service_time) = &embedded.service_time {
            config
                .service_times
                .set_all(self.check_distribution("target.embedded.service_time", service_time)?);
        }
        for (endpoint, service_time) in &embedded.endpoints {
            let key = format!("target.embedded.endpoints.{}", endpoint.get_ref());
            let value = self.check_distribution(&key, service_time)?;
            if !config.service_times.set(endpoint.get_ref(), value) {
                return Err(self.source.error(
                    &endpoint.span(),
                    format!(
                        "unknown embedded endpoint {:?} in `target.embedded.endpoints`. Use one of: {}.",
                        endpoint.get_ref(),
                        target::ENDPOINT_NAMES.join(", ")
                    ),
                ));
            }
        }
        if let Some(faults) = &embedded.faults {
            faults.validate().map_err(|problem| {
                self.source
                    .error(&(0..0), format!("`target.embedded.faults`: {problem}"))
            })?;
            config.faults = faults.clone();
        }
        if let Some(stall) = &embedded.stall {
            if config.faults.stall.is_some() {
                return Err(self.source.error(
                    &stall.span(),
                    "`target.embedded.stall` and `target.embedded.faults.stall` are both set. Keep one of them.",
                ));
            }
            let every =
                self.positive_seconds("target.embedded.stall.every_s", &stall.get_ref().every_s)?;
            let length = self.duration_in(
                "target.embedded.stall.duration_ms",
                &stall.get_ref().duration_ms,
                TimeUnit::Milliseconds,
                false,
            )?;
            if length >= every {
                return Err(self.source.error(
                    &stall.span(),
                    "`target.embedded.stall.duration_ms` must be shorter than `every_s`, or the target would never answer.",
                ));
            }
            config.faults.stall = Some(target::Stall { every, length });
        }
        Ok(config)
    }

    fn check_distribution(
        &self,
        key: &str,
        value: &Spanned<Distribution>,
    ) -> Result<Distribution, ScenarioError> {
        value.get_ref().validate().map_err(|problem| {
            self.source
                .error(&value.span(), format!("`{key}`: {problem}"))
        })?;
        Ok(*value.get_ref())
    }

    fn resolve_login(
        &self,
        login: &LoginSection,
        target: &TargetPlan,
    ) -> Result<LoginPlan, ScenarioError> {
        let path = login.path.get_ref();
        if !path.starts_with('/') {
            return Err(self.source.error(
                &login.path.span(),
                format!("`login.path` = {path:?} must start with '/', e.g. \"/api/auth/login\"."),
            ));
        }
        let pointer = login.token_pointer.get_ref();
        if !pointer.starts_with('/') {
            return Err(self.source.error(
                &login.token_pointer.span(),
                format!("`login.token_pointer` = {pointer:?} is not a JSON pointer. Write it like \"/data/token\"."),
            ));
        }
        let refresh_before_expiry = self.duration_in(
            "login.refresh_before_expiry_s",
            &login.refresh_before_expiry_s,
            TimeUnit::Seconds,
            true,
        )?;
        let credentials = match &login.credentials {
            _ if self.without_credentials => Vec::new(),
            Some(section) => self.load_credentials(section)?,
            None if matches!(target, TargetPlan::Embedded(_)) => target::demo_credentials(20),
            None => {
                return Err(ScenarioError {
                    message: format!(
                        "{}: `login.credentials` is missing. Add credentials = {{ csv = \"users.csv\" }} (a file with a username,password header) or credentials = {{ username_env = \"PARALLAX_USERNAME\", password_env = \"PARALLAX_PASSWORD\" }}.",
                        self.source.path.display()
                    ),
                })
            }
        };
        Ok(LoginPlan {
            path: path.clone(),
            username_field: login.username_field.clone(),
            password_field: login.password_field.clone(),
            token_pointer: pointer.clone(),
            refresh_before_expiry,
            credentials,
            max_logins_per_s: match &login.max_logins_per_s {
                Some(rate) => Some(self.positive_rate("login.max_logins_per_s", rate)?),
                None => None,
            },
        })
    }

    fn load_credentials(
        &self,
        section: &Spanned<CredentialsSection>,
    ) -> Result<Vec<Credential>, ScenarioError> {
        let span = section.span();
        let fields = section.get_ref();
        match (&fields.csv, &fields.username_env, &fields.password_env) {
            (Some(csv), None, None) => {
                let base = self.source.path.parent().unwrap_or(Path::new("."));
                let path = base.join(csv);
                read_credentials_csv(&path).map_err(|problem| {
                    self.source.error(&span, format!("`login.credentials.csv` = {csv:?}: {problem}"))
                })
            }
            (None, Some(username_env), Some(password_env)) => {
                let read = |name: &str| {
                    std::env::var(name).ok().filter(|value| !value.is_empty()).ok_or_else(|| {
                        self.source.error(
                            &span,
                            format!("environment variable {name} is not set or empty (named by `login.credentials`). Export it before the run."),
                        )
                    })
                };
                let username = read(username_env)?;
                let password = Secret::new(read(password_env)?);
                Ok(vec![Credential { username, password }])
            }
            _ => Err(self.source.error(
                &span,
                "`login.credentials` must be either { csv = \"FILE\" } or { username_env = \"VAR\", password_env = \"VAR\" }.",
            )),
        }
    }

    fn resolve_requests(
        &self,
        requests: &[RequestSection],
    ) -> Result<Vec<RequestPlan>, ScenarioError> {
        if requests.is_empty() {
            return Err(ScenarioError {
                message: format!(
                    "{}: the scenario has no [[request]]. Add at least one, e.g. [[request]] name = \"list\" path = \"/api/items\".",
                    self.source.path.display()
                ),
            });
        }
        let mut plans: Vec<RequestPlan> = Vec::with_capacity(requests.len());
        for request in requests {
            let name = request.name.get_ref().trim().to_string();
            if name.is_empty() || name == "login" || plans.iter().any(|plan| plan.name == name) {
                return Err(self.source.error(
                    &request.name.span(),
                    format!("request name {name:?} is empty, reserved or used twice. Give each [[request]] a unique name other than \"login\"."),
                ));
            }
            let method_text = request.method.get_ref().to_ascii_uppercase();
            let method = match method_text.as_str() {
                "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" => {
                    http::Method::from_bytes(method_text.as_bytes()).expect("listed methods are valid")
                }
                _ => {
                    return Err(self.source.error(
                        &request.method.span(),
                        format!("`method` = {:?} is not supported. Use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS.", request.method.get_ref()),
                    ))
                }
            };
            let path = request.path.get_ref();
            if !path.starts_with('/') {
                return Err(self.source.error(
                    &request.path.span(),
                    format!("`path` = {path:?} must start with '/', e.g. \"/api/items\"."),
                ));
            }
            let weight = *request.weight.get_ref();
            if !(1..=1_000_000).contains(&weight) {
                return Err(self.source.error(
                    &request.weight.span(),
                    format!("`weight` must be a whole number from 1 to 1000000, got {weight}."),
                ));
            }
            let body = match &request.body {
                Some(body) => Some(self.json_body(&name, body, &request.name.span())?),
                None => None,
            };
            let server_time = match &request.server_time {
                Some(section) => {
                    if section.get_ref().clock_utc_offset.is_some() {
                        return Err(self.source.error(
                            &section.span(),
                            "`clock_utc_offset` applies to the whole scenario. Move it to the [server_time] section.",
                        ));
                    }
                    Some(self.server_time_source(section, "request.server_time")?)
                }
                None => None,
            };
            plans.push(RequestPlan {
                name,
                method,
                path: path.clone(),
                body,
                weight: weight as u32,
                server_time,
            });
        }
        Ok(plans)
    }

    /// Converts a request body to JSON bytes. A table or array is converted
    /// value by value; a string must hold JSON text and is sent as it is.
    fn json_body(
        &self,
        name: &str,
        body: &toml::Value,
        span: &Range<usize>,
    ) -> Result<Vec<u8>, ScenarioError> {
        if let toml::Value::String(text) = body {
            return match serde_json::from_str::<serde_json::Value>(text) {
                Ok(_) => Ok(text.as_bytes().to_vec()),
                Err(error) => Err(self.source.error(
                    span,
                    format!("the body of request {name:?} is a string but not valid JSON ({error}). Write the body as a TOML table, e.g. body = {{ name = \"x\" }}, or as a string holding JSON."),
                )),
            };
        }
        let json = toml_to_json(body).map_err(|problem| {
            self.source
                .error(span, format!("the body of request {name:?} {problem}"))
        })?;
        Ok(serde_json::to_vec(&json).expect("a JSON value serialises"))
    }

    fn resolve_load(&self, load: &Spanned<LoadSection>) -> Result<LoadModel, ScenarioError> {
        let section = load.get_ref();
        match section.model.get_ref().as_str() {
            "closed" => self.resolve_closed(section, &load.span()),
            "open" => self.resolve_open(section, &load.span()),
            other => Err(self.source.error(
                &section.model.span(),
                format!("`load.model` = {other:?} is not a load model. Use \"closed\" (fixed users) or \"open\" (arrival rate)."),
            )),
        }
    }

    /// Rejects keys of the other model, so a misplaced key is never ignored.
    fn reject_keys(
        &self,
        keys: &[(&str, bool)],
        span: &Range<usize>,
        model: &str,
        fix: &str,
    ) -> Result<(), ScenarioError> {
        match keys.iter().find(|(_, present)| *present) {
            Some((key, _)) => Err(self.source.error(
                span,
                format!("`load.{key}` belongs to the {model} model. Remove it, or {fix}."),
            )),
            None => Ok(()),
        }
    }

    fn resolve_closed(
        &self,
        load: &LoadSection,
        span: &Range<usize>,
    ) -> Result<LoadModel, ScenarioError> {
        let open_keys = [
            ("rate_per_s", load.rate_per_s.is_some()),
            ("stages", !load.stages.is_empty()),
            ("max_users", load.max_users.is_some()),
            ("arrivals", load.arrivals.is_some()),
            ("seed", load.seed.is_some()),
            ("max_queue_wait_s", load.max_queue_wait_s.is_some()),
        ];
        self.reject_keys(&open_keys, span, "open", "set model = \"open\"")?;
        let users = self.users(load, span)?;
        let duration = self.required_seconds("load.duration_s", &load.duration_s, span)?;
        let pacing = match &load.pacing_ms {
            Some(pacing) => {
                Some(self.duration_in("load.pacing_ms", pacing, TimeUnit::Milliseconds, false)?)
            }
            None => None,
        };
        let ramp_up = self.optional_seconds("load.ramp_up_s", &load.ramp_up_s)?;
        let ramp_down = self.optional_seconds("load.ramp_down_s", &load.ramp_down_s)?;
        if ramp_up + ramp_down > duration {
            return Err(self.source.error(
                span,
                format!(
                    "`load.ramp_up_s` + `load.ramp_down_s` ({} s) is longer than `load.duration_s` ({} s), which includes both ramps. Lengthen the run or shorten the ramps.",
                    (ramp_up + ramp_down).as_secs_f64(),
                    duration.as_secs_f64()
                ),
            ));
        }
        let think_time = match &load.think_time {
            Some(think_time) => Some(self.check_distribution("load.think_time", think_time)?),
            None => None,
        };
        let rate_cap_per_s = match &load.rate_cap_per_s {
            Some(cap) => Some(self.positive_rate("load.rate_cap_per_s", cap)?),
            None => None,
        };
        let user_rate_cap_per_s = match &load.user_rate_cap_per_s {
            Some(cap) => Some(self.positive_rate("load.user_rate_cap_per_s", cap)?),
            None => None,
        };
        Ok(LoadModel::Closed(ClosedModel {
            users,
            duration,
            ramp_up,
            ramp_down,
            pacing,
            think_time,
            rate_cap_per_s,
            user_rate_cap_per_s,
        }))
    }

    fn resolve_open(
        &self,
        load: &LoadSection,
        span: &Range<usize>,
    ) -> Result<LoadModel, ScenarioError> {
        let closed_keys = [
            ("pacing_ms", load.pacing_ms.is_some()),
            ("ramp_up_s", load.ramp_up_s.is_some()),
            ("ramp_down_s", load.ramp_down_s.is_some()),
            ("think_time", load.think_time.is_some()),
            ("rate_cap_per_s", load.rate_cap_per_s.is_some()),
            ("user_rate_cap_per_s", load.user_rate_cap_per_s.is_some()),
        ];
        self.reject_keys(&closed_keys, span, "closed", "set model = \"closed\"")?;
        let users = self.users(load, span)?;
        let max_users = match &load.max_users {
            Some(max_users) => {
                let value = *max_users.get_ref();
                if value < users as i64 || value > 100_000 {
                    return Err(self.source.error(
                        &max_users.span(),
                        format!("`load.max_users` must be at least `load.users` ({users}) and at most 100000, got {value}."),
                    ));
                }
                value as usize
            }
            None => users,
        };
        let Some(rate) = &load.rate_per_s else {
            return Err(self.source.error(span, "`load.rate_per_s` is missing: the open model needs an arrival rate, e.g. rate_per_s = 50."));
        };
        let start_rate = self.positive_rate("load.rate_per_s", rate)?;
        let schedule = if load.stages.is_empty() {
            let duration = self.required_seconds("load.duration_s", &load.duration_s, span)?;
            RateSchedule::constant(start_rate, duration)
        } else {
            if let Some(duration) = &load.duration_s {
                return Err(self.source.error(
                    &duration.span(),
                    "`load.duration_s` and `load.stages` cannot both be set: with stages the run lasts as long as they add up to. Remove duration_s.",
                ));
            }
            let mut stages = Vec::with_capacity(load.stages.len());
            for (index, stage) in load.stages.iter().enumerate() {
                let key = format!("load.stages[{index}]");
                let stage = stage.get_ref();
                let duration =
                    self.positive_seconds(&format!("{key}.duration_s"), &stage.duration_s)?;
                let rate_per_s =
                    self.positive_rate(&format!("{key}.rate_per_s"), &stage.rate_per_s)?;
                let ramp = match stage
                    .ramp
                    .as_ref()
                    .map(|ramp| (ramp.get_ref().as_str(), ramp.span()))
                {
                    None | Some(("step", _)) => Ramp::Step,
                    Some(("linear", _)) => Ramp::Linear,
                    Some((other, ramp_span)) => {
                        return Err(self.source.error(
                            &ramp_span,
                            format!(
                            "`{key}.ramp` = {other:?} is not a ramp. Use \"step\" or \"linear\"."
                        ),
                        ))
                    }
                };
                stages.push(Stage {
                    duration,
                    rate_per_s,
                    ramp,
                });
            }
            RateSchedule::new(start_rate, stages)
        };
        let process = match load.arrivals.as_ref().map(|arrivals| (arrivals.get_ref().as_str(), arrivals.span())) {
            Some(("uniform", _)) | None if load.seed.is_some() => {
                return Err(self.source.error(
                    span,
                    "`load.seed` seeds Poisson arrivals only. Remove it, or set arrivals = \"poisson\".",
                ))
            }
            None | Some(("uniform", _)) => ArrivalProcess::Uniform,
            Some(("poisson", _)) => ArrivalProcess::Poisson { seed: load.seed.unwrap_or(1) },
            Some((other, arrivals_span)) => {
                return Err(self.source.error(
                    &arrivals_span,
                    format!("`load.arrivals` = {other:?} is not an arrival process. Use \"uniform\" or \"poisson\"."),
                ))
            }
        };
        // A uniform schedule places its first arrival where the integral of the
        // rate passes 0.5; a schedule that never gets there plans nothing.
        if schedule.arrivals(ArrivalProcess::Uniform).next().is_none() {
            return Err(self.source.error(
                span,
                format!(
                    "the open-model schedule plans no request ({:.3} expected over {} s). Raise `load.rate_per_s` or lengthen the run.",
                    schedule.expected_arrivals(),
                    schedule.duration().as_secs_f64()
                ),
            ));
        }
        let max_queue_wait = match &load.max_queue_wait_s {
            Some(wait) => Some(self.positive_seconds("load.max_queue_wait_s", wait)?),
            None => None,
        };
        Ok(LoadModel::Open(OpenModel {
            users,
            max_users,
            schedule,
            process,
            max_queue_wait,
        }))
    }

    fn users(&self, load: &LoadSection, span: &Range<usize>) -> Result<usize, ScenarioError> {
        let Some(users) = &load.users else {
            return Err(self.source.error(
                span,
                "`load.users` is missing: set how many virtual users to run, e.g. users = 10.",
            ));
        };
        let count = *users.get_ref();
        if !(1..=100_000).contains(&count) {
            return Err(self.source.error(
                &users.span(),
                format!("`load.users` must be from 1 to 100000, got {count}."),
            ));
        }
        Ok(count as usize)
    }

    fn positive_rate(&self, key: &str, rate: &Spanned<f64>) -> Result<f64, ScenarioError> {
        let value = *rate.get_ref();
        if !value.is_finite() || value <= 0.0 || value > 10_000_000.0 {
            return Err(self.source.error(
                &rate.span(),
                format!("`{key}` must be a positive rate in requests per second (at most 10000000), got {value}. Fractions such as 0.5 are allowed."),
            ));
        }
        Ok(value)
    }

    fn required_seconds(
        &self,
        key: &str,
        value: &Option<Spanned<f64>>,
        span: &Range<usize>,
    ) -> Result<Duration, ScenarioError> {
        match value {
            Some(value) => self.positive_seconds(key, value),
            None => Err(self.source.error(
                span,
                format!(
                    "`{key}` is missing: set how long to run, in seconds, e.g. duration_s = 30."
                ),
            )),
        }
    }

    fn positive_seconds(&self, key: &str, value: &Spanned<f64>) -> Result<Duration, ScenarioError> {
        self.duration_in(key, value, TimeUnit::Seconds, false)
    }

    /// An optional number of seconds that may be zero; absent means zero.
    fn optional_seconds(
        &self,
        key: &str,
        value: &Option<Spanned<f64>>,
    ) -> Result<Duration, ScenarioError> {
        match value {
            Some(value) => self.duration_in(key, value, TimeUnit::Seconds, true),
            None => Ok(Duration::ZERO),
        }
    }

    /// Checks a duration written in `unit`: finite, at most one week, above
    /// zero unless `zero_allowed`. The message quotes the value as written.
    fn duration_in(
        &self,
        key: &str,
        value: &Spanned<f64>,
        unit: TimeUnit,
        zero_allowed: bool,
    ) -> Result<Duration, ScenarioError> {
        let written = *value.get_ref();
        let seconds = written * unit.seconds();
        let too_small = if zero_allowed {
            seconds < 0.0
        } else {
            seconds <= 0.0
        };
        if !seconds.is_finite() || too_small || seconds > MAX_SECONDS {
            let lower = if zero_allowed {
                "zero or more"
            } else {
                "a positive number of"
            };
            let max = MAX_SECONDS / unit.seconds();
            return Err(self.source.error(
                &value.span(),
                format!(
                    "`{key}` must be {lower} {} up to {max} (one week), got {written}.",
                    unit.name()
                ),
            ));
        }
        Ok(Duration::from_secs_f64(seconds))
    }

    fn optional_check(
        &self,
        key: &str,
        value: &Option<Spanned<f64>>,
        max: f64,
    ) -> Result<Option<f64>, ScenarioError> {
        let Some(value) = value else { return Ok(None) };
        let limit = *value.get_ref();
        if !limit.is_finite() || !(0.0..=max).contains(&limit) {
            return Err(self.source.error(
                &value.span(),
                format!("`{key}` must be from 0 to {max}, got {limit}."),
            ));
        }
        Ok(Some(limit))
    }
}

/// The maximum duration any setting accepts, in seconds (one week).
const MAX_SECONDS: f64 = 604_800.0;

/// The unit a duration key is written in.
#[derive(Debug, Clone, Copy)]
enum TimeUnit {
    Seconds,
    Milliseconds,
}

impl TimeUnit {
    fn seconds(self) -> f64 {
        match self {
            TimeUnit::Seconds => 1.0,
            TimeUnit::Milliseconds => 1e-3,
        }
    }

    fn name(self) -> &'static str {
        match self {
            TimeUnit::Seconds => "seconds",
            TimeUnit::Milliseconds => "milliseconds",
        }
    }
}

/// Converts a TOML value to JSON, rejecting what JSON cannot hold exactly.
fn toml_to_json(value: &toml::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as Json;

    Ok(match value {
        toml::Value::String(text) => Json::String(text.clone()),
        toml::Value::Integer(number) => Json::from(*number),
        toml::Value::Float(number) => serde_json::Number::from_f64(*number)
            .map(Json::Number)
            .ok_or_else(|| format!("holds {number}, which JSON cannot represent. Use a finite number."))?,
        toml::Value::Boolean(flag) => Json::Bool(*flag),
        toml::Value::Datetime(datetime) => {
            return Err(format!("holds the TOML date {datetime}, which JSON has no type for. Write it as a string in quotes."))
        }
        toml::Value::Array(items) => Json::Array(items.iter().map(toml_to_json).collect::<Result<_, _>>()?),
        toml::Value::Table(table) => Json::Object(
            table
                .iter()
                .map(|(key, value)| Ok((key.clone(), toml_to_json(value)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// Whether a key names a secret whose literal value must not be repeated.
fn is_secret_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    let names_secret = ["password", "passwd", "secret", "token", "api_key", "apikey"]
        .iter()
        .any(|word| lower.contains(word));
    // `password_env` names a variable and `password_field` a JSON key: neither holds a secret.
    names_secret
        && !lower.ends_with("_env")
        && !lower.ends_with("_field")
        && lower != "token_pointer"
}

fn redact_secret_keys(table: &mut toml::Table) {
    for (key, value) in table.iter_mut() {
        match value {
            toml::Value::String(text) if is_secret_key(key) && !text.is_empty() => {
                *text = "<redacted>".into()
            }
            other => redact_nested(other),
        }
    }
}

/// Redacts secret keys in the tables found anywhere inside `value`, arrays of arrays included.
fn redact_nested(value: &mut toml::Value) {
    match value {
        toml::Value::Table(inner) => redact_secret_keys(inner),
        toml::Value::Array(items) => items.iter_mut().for_each(redact_nested),
        _ => {}
    }
}

/// Collects the dotted paths of string values under keys that name a secret.
fn find_secret_keys(value: &toml::Value, path: &str, found: &mut Vec<String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, child) in table {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if is_secret_key(key)
                    && matches!(child, toml::Value::String(text) if !text.is_empty())
                {
                    found.push(child_path);
                } else {
                    find_secret_keys(child, &child_path, found);
                }
            }
        }
        toml::Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                find_secret_keys(item, &format!("{path}[{index}]"), found);
            }
        }
        _ => {}
    }
}

/// Keeps a scenario name safe as part of a folder name.
fn sanitize_name(name: &str) -> String {
    name.trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Reads a credentials CSV with a `username,password` header. Error messages
/// name rows and columns but never quote a password.
pub fn read_credentials_csv(path: &Path) -> Result<Vec<Credential>, String> {
    let file = std::fs::File::open(path).map_err(|error| {
        format!("cannot open {} ({error}). Create a CSV file with a username,password header and one user per line.", path.display())
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(file);
    let headers = reader
        .headers()
        .map_err(|error| format!("cannot read the header of {}: {error}.", path.display()))?
        .clone();
    let column = |name: &str| headers.iter().position(|header| header == name);
    let (Some(username_column), Some(password_column)) = (column("username"), column("password"))
    else {
        // The first line is not quoted: without a header it would be a user's password.
        return Err(format!(
            "{} must start with the header line username,password (the first line names no such columns). Add that line above the users.",
            path.display()
        ));
    };
    let mut credentials = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let line = index + 2;
        let record = record.map_err(|error| {
            let error = error.to_string();
            // The csv crate's messages describe field counts, never field values.
            format!(
                "{} line {line} is malformed ({error}). Each line needs a username and a password.",
                path.display()
            )
        })?;
        let username = record.get(username_column).unwrap_or_default();
        let password = record.get(password_column).unwrap_or_default();
        if username.is_empty() || password.is_empty() {
            return Err(format!("{} line {line} has an empty username or password. Fill in both or remove the line.", path.display()));
        }
        credentials.push(Credential {
            username: username.to_string(),
            password: Secret::new(password),
        });
    }
    if credentials.is_empty() {
        return Err(format!(
            "{} holds no users. Add at least one line after the username,password header.",
            path.display()
        ));
    }
    Ok(credentials)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid scenario with only the required keys, for tests here and elsewhere.
    pub(crate) const MINIMAL: &str = r#"
[target]
base_url = "embedded"

[[request]]
name = "list"
path = "/api/items"

[load]
model = "closed"
users = 2
duration_s = 1
"#;

    fn parse(text: &str) -> Result<Plan, ScenarioError> {
        Plan::parse(text, Path::new("test.toml"))
    }

    fn error_of(text: &str) -> String {
        parse(text)
            .expect_err("scenario should be rejected")
            .to_string()
    }

    #[test]
    fn minimal_scenario_resolves_defaults() {
        let plan = parse(MINIMAL).unwrap();
        assert_eq!(plan.name, "test");
        assert_eq!(plan.login.path, "/api/auth/login");
        assert_eq!(plan.login.token_pointer, "/data/token");
        assert_eq!(plan.requests[0].method, http::Method::GET);
        assert_eq!(plan.load.users(), 2);
        assert_eq!(plan.request_timeout, Duration::from_secs(30));
        assert!(matches!(plan.target, TargetPlan::Embedded(_)));
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let message = error_of(&MINIMAL.replace("users = 2", "usres = 2"));
        assert!(
            message.starts_with("test.toml:11:1: unknown field `usres`"),
            "{message}"
        );
        assert!(message.contains("docs/scenarios.md"), "{message}");
    }

    #[test]
    fn wrong_type_names_key() {
        let message = error_of(&MINIMAL.replace("users = 2", "users = \"2\""));
        assert!(
            message.starts_with("test.toml:11:9: `users`: invalid type: string \"2\""),
            "{message}"
        );
        assert!(message.contains("without quotes"), "{message}");
    }

    #[test]
    fn bad_bodies_are_rejected() {
        let with_body = |body: &str| {
            MINIMAL.replace(
                "path = \"/api/items\"",
                &format!("path = \"/api/items\"\nbody = {body}"),
            )
        };
        assert!(
            error_of(&with_body("'{\"name\": broken'")).contains("is a string but not valid JSON")
        );
        assert!(error_of(&with_body("{ price = nan }")).contains("JSON cannot represent"));
        assert!(error_of(&with_body("{ at = 1979-05-27 }")).contains("Write it as a string"));
        let plan = parse(&with_body("'{\"name\": \"ok\"}'")).unwrap();
        assert_eq!(
            plan.requests[0].body.as_deref(),
            Some(&b"{\"name\": \"ok\"}"[..])
        );
    }

    #[test]
    fn negative_rate_is_rejected() {
        let text = MINIMAL.replace(
            "model = \"closed\"\nusers = 2\nduration_s = 1",
            "model = \"open\"\nusers = 2\nrate_per_s = -5\nduration_s = 1",
        );
        let message = error_of(&text);
        assert!(
            message.starts_with("test.toml:12:14: `load.rate_per_s` must be a positive rate"),
            "{message}"
        );
        assert!(message.contains("got -5"), "{message}");
    }

    #[test]
    fn zero_rate_is_rejected() {
        let text = MINIMAL.replace(
            "model = \"closed\"\nusers = 2\nduration_s = 1",
            "model = \"open\"\nusers = 2\nrate_per_s = 0\nduration_s = 1",
        );
        assert!(error_of(&text).contains("`load.rate_per_s` must be a positive rate"));
    }

    #[test]
    fn missing_credentials_file_is_named() {
        let text = MINIMAL.replace(
            "base_url = \"embedded\"",
            "base_url = \"embedded\"\n[login]\ncredentials = { csv = \"no-such-users.csv\" }",
        );
        let message = error_of(&text);
        assert!(
            message.contains("`login.credentials.csv` = \"no-such-users.csv\""),
            "{message}"
        );
        assert!(message.contains("Create a CSV file"), "{message}");
    }

    #[test]
    fn url_target_needs_credentials() {
        let text = MINIMAL.replace("\"embedded\"", "\"http://127.0.0.1:8080\"");
        assert!(error_of(&text).contains("`login.credentials` is missing"));
    }

    #[test]
    fn bad_url_is_rejected() {
        let text = MINIMAL.replace("\"embedded\"", "\"127.0.0.1:8080\"");
        let message = error_of(&text);
        assert!(
            message.starts_with("test.toml:3:12: `target.base_url` = \"127.0.0.1:8080\""),
            "{message}"
        );
        assert!(message.contains("http://127.0.0.1:8080"), "{message}");
    }

    #[test]
    fn stages_build_schedule() {
        let text = MINIMAL.replace(
            "model = \"closed\"\nusers = 2\nduration_s = 1",
            "model = \"open\"\nusers = 4\nrate_per_s = 10\nstages = [{ duration_s = 20, rate_per_s = 200, ramp = \"linear\" }]",
        );
        let plan = parse(&text).unwrap();
        assert_eq!(plan.load.duration(), Duration::from_secs(20));
    }

    #[test]
    fn credentials_csv_errors_hide_passwords() {
        let dir = std::env::temp_dir().join(format!("parallax-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users.csv");
        std::fs::write(&path, "username,password\nalice,s3cret-value\nbob,\n").unwrap();
        let message = read_credentials_csv(&path).unwrap_err();
        assert!(
            message.contains("line 3 has an empty username or password"),
            "{message}"
        );
        assert!(!message.contains("s3cret-value"));
        std::fs::write(&path, "user,pass\nalice,x\n").unwrap();
        assert!(read_credentials_csv(&path)
            .unwrap_err()
            .contains("header line"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
