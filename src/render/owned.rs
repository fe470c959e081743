//! What regmirror owns inside config.toml, and the two edits it ever makes there: set an owned
//! value (remembering what it replaced) and take every owned value back out (restoring it).
//! Every byte outside the owned values stays as it was.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use toml_edit::{DocumentMut, Item, Table, Value};

use super::RenderError;

/// The comment put above every table regmirror creates.
pub const MARKER: &str =
    "# managed by regmirror (jet-system/registry-info); edits are overwritten\n";

/// A value that existed before regmirror replaced it, kept exactly (decor included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousValue {
    pub prefix: String,
    pub repr: String,
    pub suffix: String,
}

/// One value regmirror wrote, and what was there before (`None`: the key did not exist).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedValue {
    pub path: Vec<String>,
    pub previous: Option<PreviousValue>,
}

/// Everything regmirror owns in config.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigOwnership {
    pub values: Vec<OwnedValue>,
    /// Tables regmirror created (removed again once they hold nothing else).
    pub created_tables: Vec<Vec<String>>,
    /// Tables that existed only implicitly (`[a.b.c]` makes `a.b` exist without a header) until
    /// regmirror put a value in them, which makes toml_edit print their header; they become
    /// implicit again once they hold no values, so revert does not leave an empty `[a.b]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub materialized_tables: Vec<Vec<String>>,
    /// The admin's file did not end with a newline; revert leaves it that way (regmirror's
    /// tables appended at the end need one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_final_newline: bool,
    /// The exact base this ownership was applied to, and the hash of the text regmirror wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Snapshot>,
}

/// While config.toml is still byte for byte what regmirror wrote, revert and the next render
/// start from the stored base instead of taking values back out: exact whatever toml_edit would
/// re-spell (a BOM, quoting, spacing). Once someone else edits the file, the surgical path is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// config.toml without regmirror's values, exactly as it was. Shared, not copied, by the
    /// states made from it (before, after, in flight, as stored): it is the size of the file.
    pub base: Arc<String>,
    /// sha256 (hex) of the config.toml text regmirror produced from `base`.
    pub written_sha256: String,
    /// The meaning fingerprint of that text (see [`super::meaning`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_meaning: Option<String>,
}

/// Hex sha256 of a text.
pub fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl ConfigOwnership {
    /// The stored base, when `current` is exactly the text regmirror last wrote.
    pub fn exact_base(&self, current: &str) -> Option<&Arc<String>> {
        self.snapshot
            .as_ref()
            .filter(|s| s.written_sha256 == sha256_hex(current))
            .map(|s| &s.base)
    }
}

impl ConfigOwnership {
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
            && self.created_tables.is_empty()
            && self.materialized_tables.is_empty()
    }

    /// The union of two ownerships (used while a write is in flight: whatever either owns).
    pub fn union(&self, other: &ConfigOwnership) -> ConfigOwnership {
        let mut out = self.clone();
        for v in &other.values {
            if !out.values.iter().any(|o| o.path == v.path) {
                out.values.push(v.clone());
            }
        }
        for t in &other.created_tables {
            if !out.created_tables.contains(t) {
                out.created_tables.push(t.clone());
            }
        }
        out.no_final_newline |= other.no_final_newline;
        if out.snapshot.is_none() {
            out.snapshot = other.snapshot.clone();
        }
        for t in &other.materialized_tables {
            if !out.materialized_tables.contains(t) {
                out.materialized_tables.push(t.clone());
            }
        }
        out
    }
}

pub(crate) fn dotted(path: &[String]) -> String {
    path.iter()
        .map(|s| {
            if !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                s.clone()
            } else {
                format!("{s:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn describe(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Value(Value::InlineTable(_)) => "an inline table",
        Item::Value(_) => "a value",
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
    }
}

/// Walk to the table at `path`, creating missing tables (recorded in `created`).
fn ensure_table<'a>(
    doc: &'a mut DocumentMut,
    path: &[String],
    created: &mut Vec<Vec<String>>,
) -> Result<&'a mut Table, RenderError> {
    let mut cur: &mut Table = doc.as_table_mut();
    for (i, seg) in path.iter().enumerate() {
        if !cur.contains_key(seg) {
            let mut t = Table::new();
            t.set_implicit(true);
            cur.insert(seg, Item::Table(t));
            created.push(path[..=i].to_vec());
        }
        let item = cur.get_mut(seg).expect("just ensured");
        let kind = describe(item);
        match item {
            Item::Table(t) => cur = t,
            _ => {
                return Err(RenderError::NotATable {
                    path: path[..=i].to_vec(),
                    kind,
                });
            }
        }
    }
    Ok(cur)
}

fn previous_of(v: &Value) -> PreviousValue {
    let full = v.to_string();
    let prefix = v
        .decor()
        .prefix()
        .and_then(|r| r.as_str())
        .unwrap_or("")
        .to_string();
    let suffix = v
        .decor()
        .suffix()
        .and_then(|r| r.as_str())
        .unwrap_or("")
        .to_string();
    let repr = full
        .get(prefix.len()..full.len().saturating_sub(suffix.len()))
        .unwrap_or(&full)
        .to_string();
    PreviousValue {
        prefix,
        repr,
        suffix,
    }
}

/// The value of an owned key, as it is in `doc` now (for drift checks and tests).
pub fn value_at<'a>(doc: &'a DocumentMut, path: &[String]) -> Option<&'a Value> {
    super::version::lookup(doc, path)?.as_value()
}

fn same_scalar(a: &Value, b: &Value) -> bool {
    matches!((a, b), (Value::String(x), Value::String(y)) if x.value() == y.value())
}

/// Set the value at `path` (creating tables), recording what it replaced in `own`.
/// An existing value keeps its key and its decor (a trailing comment stays).
pub fn set_value(
    doc: &mut DocumentMut,
    path: &[String],
    mut value: Value,
    own: &mut ConfigOwnership,
) -> Result<(), RenderError> {
    let (key, parent) = path.split_last().expect("non-empty path");
    let table = ensure_table(doc, parent, &mut own.created_tables)?;
    if table.is_implicit()
        && !table.is_dotted()
        && !table.iter().any(|(_, v)| v.is_value())
        && !own.created_tables.iter().any(|t| t == parent)
        && !own.materialized_tables.iter().any(|t| t == parent)
    {
        own.materialized_tables.push(parent.to_vec());
    }
    let previous = match table.get_mut(key) {
        None => {
            table.insert(key, Item::Value(value));
            None
        }
        Some(item) => {
            let kind = describe(item);
            match item {
                Item::Value(old) => {
                    let ours = is_credential_key(path) && same_scalar(old, &value);
                    let prev = (!ours).then(|| previous_of(old));
                    *value.decor_mut() = old.decor().clone();
                    *old = value;
                    prev
                }
                _ => {
                    return Err(RenderError::NotAValue {
                        path: path.to_vec(),
                        kind,
                    });
                }
            }
        }
    };
    if !own.values.iter().any(|v| v.path == path) {
        own.values.push(OwnedValue {
            path: path.to_vec(),
            previous,
        });
    }
    Ok(())
}

/// The keys whose values are credentials: with no record of what they replaced, a value equal
/// to the one regmirror writes is regmirror's own (an earlier apply whose state was lost), never
/// recorded as the admin's.
const CREDENTIAL_KEYS: [&str; 3] = ["password", "auth", "identitytoken"];

fn is_credential_key(path: &[String]) -> bool {
    path.last()
        .is_some_and(|k| CREDENTIAL_KEYS.contains(&k.to_ascii_lowercase().as_str()))
}

/// What regmirror owned in a file whose state was lost: every value directly in a table that
/// carries regmirror's marker comment, and those tables.
pub fn recognise(doc: &DocumentMut) -> ConfigOwnership {
    fn walk(t: &Table, path: &mut Vec<String>, own: &mut ConfigOwnership) {
        let marked = t
            .decor()
            .prefix()
            .and_then(|p| p.as_str())
            .is_some_and(|p| p.contains(MARKER.trim_end()));
        for (k, item) in t.iter() {
            path.push(k.to_string());
            match item {
                Item::Value(_) if marked => own.values.push(OwnedValue {
                    path: path.clone(),
                    previous: None,
                }),
                Item::Table(sub) => walk(sub, path, own),
                _ => {}
            }
            path.pop();
        }
        if marked {
            own.created_tables.push(path.clone());
        }
    }
    let mut own = ConfigOwnership::default();
    walk(doc.as_table(), &mut Vec::new(), &mut own);
    own
}

/// Put the marker comment on every table regmirror created (or made visible) that holds values
/// directly.
pub fn mark_created(doc: &mut DocumentMut, own: &ConfigOwnership) {
    for path in own.created_tables.iter().chain(&own.materialized_tables) {
        if let Some(t) = table_at(doc, path)
            && t.iter().any(|(_, v)| v.is_value())
        {
            t.decor_mut().set_prefix(format!("\n{MARKER}"));
        }
    }
}

fn table_at<'a>(doc: &'a mut DocumentMut, path: &[String]) -> Option<&'a mut Table> {
    let mut cur = doc.as_table_mut();
    for seg in path {
        cur = cur.get_mut(seg)?.as_table_mut()?;
    }
    Some(cur)
}

/// Take every owned value out of `doc`: restore what it replaced, or remove the key; then remove
/// the tables regmirror created if nothing else lives in them. Values an admin changed since are
/// still replaced by what was there before regmirror (regmirror owns those keys).
pub fn unapply(doc: &mut DocumentMut, own: &ConfigOwnership) -> Result<(), RenderError> {
    for ov in own.values.iter().rev() {
        let Some((key, parent)) = ov.path.split_last() else {
            continue;
        };
        let Some(table) = table_at(doc, parent) else {
            continue;
        };
        match &ov.previous {
            None => {
                table.remove(key);
            }
            Some(prev) => {
                let mut v: Value = prev.repr.parse().map_err(|e| {
                    // Not the value itself: it may be an admin's password.
                    RenderError::BadPrevious {
                        path: ov.path.clone(),
                        why: super::toml_error(&prev.repr, &e),
                    }
                })?;
                v.decor_mut().set_prefix(prev.prefix.clone());
                v.decor_mut().set_suffix(prev.suffix.clone());
                match table.get_mut(key) {
                    Some(item) => *item = Item::Value(v),
                    None => {
                        table.insert(key, Item::Value(v));
                    }
                }
            }
        }
    }
    for path in &own.materialized_tables {
        if let Some(t) = table_at(doc, path)
            && !t.iter().any(|(_, v)| v.is_value())
        {
            t.set_implicit(true);
            t.decor_mut().clear();
        }
    }
    let mut created = own.created_tables.clone();
    created.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for path in created {
        let Some((key, parent)) = path.split_last() else {
            continue;
        };
        let Some(table) = table_at(doc, parent) else {
            continue;
        };
        if table
            .get(key)
            .and_then(Item::as_table)
            .is_some_and(Table::is_empty)
        {
            table.remove(key);
        }
    }
    Ok(())
}
