//! What containerd would load from a config.toml, without its spelling: a fingerprint of the
//! tables and values a document holds, whatever its comments, line endings, key quoting, table
//! headers (dotted, inline or `[a.b]`) and order. Two texts with the same fingerprint mean the
//! same; a change that means the same needs no write and no restart. Computed on documents the
//! renderer parsed anyway: no parse of its own.
//!
//! The hash is XXH3-128, not sha256: it only tells a file's meaning from the meaning regmirror
//! wrote (an equal fingerprint skips a write and a restart), it guards nothing against an
//! attacker (whoever can write config.toml controls containerd anyway), and it runs over every
//! key and value of the file twice per apply (with sha256 this walk was a fifth of `apply`'s
//! instructions on the 165 KB benchmark file, by callgrind). The `xxh3-128:` prefix keeps it
//! apart from the sha256 fingerprints older states hold: those never match, which costs at most
//! one restart after an upgrade, and only when the bytes differ too.

use toml_edit::{DocumentMut, Item, TableLike, Value};
use xxhash_rust::xxh3::Xxh3;

type Hasher = Xxh3;

/// The fingerprint of a document's meaning (`xxh3-128:` and 32 hex digits).
pub fn fingerprint(doc: &DocumentMut) -> String {
    let mut h = Hasher::new();
    table(doc.as_table(), &mut h);
    format!("xxh3-128:{:032x}", h.digest128())
}

/// True when `a` and `b` both parse and hold the same tables and values (the tests' view of
/// [`fingerprint`]).
#[cfg(test)]
fn same_meaning(a: &str, b: &str) -> bool {
    let fp = |t: &str| t.parse::<DocumentMut>().ok().map(|d| fingerprint(&d));
    matches!((fp(a), fp(b)), (Some(x), Some(y)) if x == y)
}

/// Length-prefixed, so that no two different trees feed the same bytes.
fn put(h: &mut Hasher, tag: u8, bytes: &[u8]) {
    h.update(&[tag]);
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

fn table(t: &dyn TableLike, h: &mut Hasher) {
    let mut entries: Vec<(&str, &Item)> = t.iter().filter(|(_, i)| !i.is_none()).collect();
    entries.sort_by_key(|(k, _)| *k);
    put(h, b'{', &(entries.len() as u64).to_le_bytes());
    for (k, i) in entries {
        put(h, b'k', k.as_bytes());
        item(i, h);
    }
}

fn item(i: &Item, h: &mut Hasher) {
    if let Some(t) = i.as_table_like() {
        return table(t, h);
    }
    match i {
        Item::Value(v) => value(v, h),
        Item::ArrayOfTables(a) => {
            put(h, b'[', &(a.len() as u64).to_le_bytes());
            a.iter().for_each(|t| table(t, h));
        }
        _ => put(h, b'0', b""),
    }
}

fn value(v: &Value, h: &mut Hasher) {
    match v {
        Value::String(s) => put(h, b's', s.value().as_bytes()),
        Value::Integer(x) => put(h, b'i', &x.value().to_le_bytes()),
        Value::Float(x) => put(h, b'f', &x.value().to_bits().to_le_bytes()),
        Value::Boolean(x) => put(h, b'b', &[u8::from(*x.value())]),
        Value::Datetime(x) => put(h, b'd', x.value().to_string().as_bytes()),
        Value::Array(a) => {
            put(h, b'a', &(a.len() as u64).to_le_bytes());
            a.iter().for_each(|x| value(x, h));
        }
        Value::InlineTable(t) => table(t, h),
    }
}

#[cfg(test)]
mod tests {
    use super::same_meaning;

    #[test]
    fn spelling_is_not_meaning() {
        let a = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/x\"\n";
        let crlf = a.replace('\n', "\r\n");
        let quoted = a.replace(
            "\"io.containerd.grpc.v1.cri\"",
            "'io.containerd.grpc.v1.cri'",
        );
        let dotted =
            "version = 2\nplugins.\"io.containerd.grpc.v1.cri\".registry.config_path = '/x' # c\n";
        let inline = "version = 2\n[plugins]\n\"io.containerd.grpc.v1.cri\" = { registry = { config_path = \"/x\" } }\n";
        for b in [crlf.as_str(), quoted.as_str(), dotted, inline] {
            assert!(same_meaning(a, b), "{b}");
        }
        assert!(!same_meaning(a, &a.replace("/x", "/y")));
        assert!(!same_meaning(a, "version = 2\n"));
        assert!(!same_meaning(
            a,
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = 1\n"
        ));
        assert!(!same_meaning("a = [\"x\", \"y\"]", "a = [\"xy\"]"));
        assert!(!same_meaning(a, "not toml ="));
    }
}
