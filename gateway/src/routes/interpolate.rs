//! `${VAR}` and `${VAR:-default}` in routes.toml values, so one file serves both compose
//! (`WRITER_URL=http://writer:8090`) and a local run (the default).

/// Replaces every `${NAME}` / `${NAME:-default}` in `value` using `lookup`. `$` not followed by
/// `{` is kept as is. An unset (or empty) variable without a default is an error naming it.
pub fn interpolate(value: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated ${{...}} in {value:?}"))?;
        let expression = &after[..end];
        let (name, default) = match expression.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expression, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("invalid variable name {name:?} in {value:?}"));
        }
        match (lookup(name).filter(|v| !v.is_empty()), default) {
            (Some(found), _) => out.push_str(&found),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (write ${{{name}:-default}} for a fallback)"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("writer".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_variables_and_defaults() {
        assert_eq!(
            interpolate("http://${HOST}:8090", env).as_deref(),
            Ok("http://writer:8090")
        );
        assert_eq!(
            interpolate("${MISSING:-http://127.0.0.1:8090}", env).as_deref(),
            Ok("http://127.0.0.1:8090")
        );
        assert_eq!(interpolate("${EMPTY:-x}", env).as_deref(), Ok("x"));
        assert_eq!(interpolate("a$b", env).as_deref(), Ok("a$b"));
        assert_eq!(
            interpolate("${HOST}${HOST}", env).as_deref(),
            Ok("writerwriter")
        );
    }

    #[test]
    fn reports_what_is_wrong() {
        let err = interpolate("${MISSING}", env).expect_err("unset");
        assert!(err.contains("MISSING is not set"), "{err}");
        assert!(
            interpolate("${HOST", env)
                .expect_err("open")
                .contains("unterminated")
        );
        assert!(
            interpolate("${A-B}", env)
                .expect_err("name")
                .contains("invalid variable")
        );
    }
}
