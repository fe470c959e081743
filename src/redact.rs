//! Redaction for everything regmirror shows a person: in a TOML text, the value of every key
//! that names a credential (`password`, `auth`, `identitytoken`, `Authorization`, any spelling:
//! quoted, literal, dotted, upper case, inside inline tables, multi-line) becomes `"***"`.
//! Redaction works on the parsed document, never on lines; a text that does not parse is not
//! shown at all.

use std::ops::Range;

use toml_edit::{Document, Item, TableLike, Value};

/// Shown instead of a text that does not parse (it may hold credentials anywhere).
pub const UNPARSED: &str =
    "# (this file does not parse as TOML; its contents are not shown: they may hold credentials)\n";

/// True for a key whose value is a credential.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "auth", "token", "secret"]
        .iter()
        .any(|w| k.contains(w))
}

fn collect_table(t: &dyn TableLike, spans: &mut Vec<Range<usize>>) {
    for (key, item) in t.iter() {
        collect_item(is_secret_key(key), item, spans);
    }
}

fn collect_item(secret: bool, item: &Item, spans: &mut Vec<Range<usize>>) {
    match item {
        Item::Value(v) => collect_value(secret, v, spans),
        Item::Table(t) => collect_table(t, spans),
        Item::ArrayOfTables(a) => a.iter().for_each(|t| collect_table(t, spans)),
        Item::None => {}
    }
}

fn collect_value(secret: bool, v: &Value, spans: &mut Vec<Range<usize>>) {
    if secret {
        spans.extend(v.span());
        return;
    }
    match v {
        Value::InlineTable(t) => collect_table(t, spans),
        Value::Array(a) => a.iter().for_each(|x| collect_value(false, x, spans)),
        _ => {}
    }
}

/// True when no key of `text` can name a credential: none of the words appears anywhere, in
/// any case, and no key can spell one with an escape (`\u0070assword`). Then nothing needs
/// redacting and the text is not parsed at all (the usual admin file).
/// A word only in table headers (`[plugins."…".registry.auths]`, no `=` on the line) names no
/// value, and a table named so is not redacted by the rule above either; any other line with a
/// word (a key, an inline table, an array of them) sends the text to the parser.
fn cannot_hold_credentials(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    if lower.contains("\\u") {
        return false;
    }
    let words = ["password", "auth", "token", "secret"];
    lower.lines().all(|line| {
        let header = line.trim_start().starts_with('[') && !line.contains('=');
        header || words.iter().all(|w| !line.contains(w))
    })
}

/// `text` with every credential value replaced by `"***"` (see the module doc).
pub fn redact_toml(text: &str) -> String {
    if cannot_hold_credentials(text) {
        return text.to_string();
    }
    let Ok(doc) = Document::parse(text) else {
        return UNPARSED.to_string();
    };
    let mut spans = Vec::new();
    collect_table(doc.as_table(), &mut spans);
    spans.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in spans {
        if r.start < at {
            continue;
        }
        out.push_str(&text[at..r.start]);
        out.push_str("\"***\"");
        at = r.end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::redact_toml;

    #[test]
    fn redacts_values_in_every_spelling() {
        let t = "username = \"u\"\n  password = \"p@ss\" # c\nAuthorization = \"Basic eA==\"\nauths = 1\n";
        assert_eq!(
            redact_toml(t),
            "username = \"u\"\n  password = \"***\" # c\nAuthorization = \"***\"\nauths = \"***\"\n"
        );
        for t in [
            "[a]\n\"password\" = \"pw1\"\n",
            "[a]\n'PASSWORD' = 'pw1'\n",
            "[a]\nauth.password = \"pw1\"\n",
            "[a]\nauth = { username = \"u\", password = \"pw1\" }\n",
            "[a]\nx = { cfg = { password = \"pw1\" } }\n",
            "[a]\npassword = \"\"\"\npw1\n\"\"\"\n",
            "[h.header]\nAuthorization = [\"Basic pw1\"]\n",
            "[[a]]\nidentitytoken = \"pw1\"\n",
        ] {
            let r = redact_toml(t);
            assert!(!r.contains("pw1"), "{t} → {r}");
            assert!(r.contains("\"***\""), "{r}");
        }
        assert!(!redact_toml("password = \"pw1\" broken").contains("pw1"));
        // An escaped key is a credential key too.
        let escaped = "[a]\n\"p\\u0061ssword\" = \"pw1\"\n";
        assert!(
            !redact_toml(escaped).contains("pw1"),
            "{}",
            redact_toml(escaped)
        );
        // Nothing to redact: the text comes back as it is, unparsed (even when it is broken).
        assert_eq!(redact_toml("[a]\nb = 1\n"), "[a]\nb = 1\n");
        let headers_only = "[plugins.\"x\".registry.auths]\n  [plugins.\"x\".registry.auths.a]\n";
        assert_eq!(redact_toml(headers_only), headers_only);
        // An array of inline tables on a line that starts with '[' is still looked at.
        let arr = "x = [\n  [{ password = \"pw1\" }],\n]\n";
        assert!(!redact_toml(arr).contains("pw1"), "{}", redact_toml(arr));
    }
}
