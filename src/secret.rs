//! Wrappers that keep passwords and tokens out of logs, errors and debug output.

use std::fmt;

/// A secret string (a password or a bearer token). Its `Debug` and `Display`
/// print a placeholder, so it cannot leak through `{:?}` or an error message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// Returns the secret value; call sites are the only places it is sent.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Replaces the secret in `text`, as it is and as a JSON string would
    /// escape it, with a placeholder: for server messages that may echo
    /// the request.
    // NOTE: other spellings of an echoed secret, such as `\u` escapes that
    // serde_json would not write or percent-encoding, are not replaced.
    pub fn redact_in(&self, text: &str) -> String {
        if self.0.is_empty() {
            return text.to_string();
        }
        let mut redacted = text.replace(&self.0, "<redacted>");
        let escaped = serde_json::to_string(&self.0).expect("a string serialises");
        let escaped = &escaped[1..escaped.len() - 1];
        if escaped != self.0 {
            redacted = redacted.replace(escaped, "<redacted>");
        }
        redacted
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_value() {
        let secret = Secret::new("hunter2");
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert!(!format!("{secret}").contains("hunter2"));
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn redaction_covers_json_escapes() {
        let secret = Secret::new(r#"pa"ss\1"#);
        let echoed = r#"bad login: {"password":"pa\"ss\\1"} or pa"ss\1"#;
        assert_eq!(
            secret.redact_in(echoed),
            r#"bad login: {"password":"<redacted>"} or <redacted>"#
        );
        assert_eq!(Secret::new("").redact_in("text"), "text");
    }
}
