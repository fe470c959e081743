//! Redaction for everything regmirror shows a person: values of credential keys in TOML texts
//! (`password`, `auth`, `identitytoken`, `Authorization`) become `"***"`.

const SECRET_KEYS: [&str; 4] = ["password", "auth", "identitytoken", "authorization"];

/// Replace the value of every credential key line with `"***"`.
pub fn redact_toml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let key_end = trimmed
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(trimmed.len());
        let key = trimmed[..key_end].trim_matches('"').to_ascii_lowercase();
        let after = trimmed[key_end..].trim_start();
        if SECRET_KEYS.contains(&key.as_str()) && after.starts_with('=') {
            let indent = &line[..line.len() - trimmed.len()];
            out.push_str(&format!("{indent}{} = \"***\"", &trimmed[..key_end]));
            if line.ends_with('\n') {
                out.push('\n');
            }
        } else {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_values_only() {
        let t = "username = \"u\"\n  password = \"p@ss\" # c\nAuthorization = \"Basic eA==\"\nauths = 1\n";
        let r = super::redact_toml(t);
        assert_eq!(
            r,
            "username = \"u\"\n  password = \"***\"\nAuthorization = \"***\"\nauths = 1\n"
        );
    }
}
