//! Credentials for alert receivers, read from a file before each send so a
//! rotated Kubernetes Secret is picked up. The file holds one of:
//! ```text
//! alertmanager:s3cret          user:password → basic auth
//! Bearer eyJhbGciOi...         a whole header value, as given (Bearer, Basic, …)
//! eyJhbGciOi...                anything else: a bearer token
//! ```

use crate::httpc::{AuthError, Authorization};
use std::path::Path;

/// The `Authorization` a credential file's text stands for.
pub fn parse_credential(text: &str) -> Result<Authorization, AuthError> {
    let t = text.trim();
    let scheme = t.split_once(' ').map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("bearer" | "basic") => Authorization::header_value(t),
        _ => match t.split_once(':') {
            Some((user, password)) if !t.contains('\n') => Authorization::basic(user, password),
            _ => Authorization::bearer(t),
        },
    }
}

/// Reads `path` and parses it; the error names the file and never shows
/// the credential.
pub fn read_credential(path: &Path) -> Result<Authorization, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_credential(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms() {
        let cases = [
            ("s3cr3t-token\n", "Bearer"),
            ("Bearer abc.def\n", "Bearer"),
            ("Basic YWxpY2U6cHc=", "Basic"),
            ("alice:pa:ss\n", "Basic"),
        ];
        for (text, scheme) in cases {
            let a = parse_credential(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(a.scheme(), scheme, "{text:?}");
            assert!(!format!("{a:?}").contains("s3cr3t"), "the credential stays out of logs");
        }
        assert_eq!(
            parse_credential("alice:pw").unwrap(),
            Authorization::basic("alice", "pw").unwrap()
        );
        assert_eq!(parse_credential("  \n"), Err(AuthError::Empty));
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = read_credential(Path::new("/no/such/secret")).unwrap_err();
        assert!(e.contains("/no/such/secret"), "{e}");
    }
}
