//! What containerd would load from a config.toml, compared without its spelling: two texts mean
//! the same when they parse to the same tables and values, whatever their comments, line
//! endings, key quoting, table headers (dotted, inline or `[a.b]`) and order. A change that
//! means the same needs no write and no restart.

use toml_edit::{Document, Item, TableLike, Value};

/// True when `a` and `b` both parse and hold the same tables and values.
pub fn same_meaning(a: &str, b: &str) -> bool {
    match (Document::parse(a), Document::parse(b)) {
        (Ok(x), Ok(y)) => same_table(x.as_table(), y.as_table()),
        _ => false,
    }
}

fn same_table(a: &dyn TableLike, b: &dyn TableLike) -> bool {
    let (na, nb) = (
        a.iter().filter(|(_, i)| !i.is_none()).count(),
        b.iter().filter(|(_, i)| !i.is_none()).count(),
    );
    na == nb
        && a.iter()
            .filter(|(_, i)| !i.is_none())
            .all(|(k, i)| b.get(k).is_some_and(|j| same_item(i, j)))
}

fn same_item(a: &Item, b: &Item) -> bool {
    if let (Some(x), Some(y)) = (a.as_table_like(), b.as_table_like()) {
        return same_table(x, y);
    }
    match (a, b) {
        (Item::Value(x), Item::Value(y)) => same_value(x, y),
        (Item::ArrayOfTables(x), Item::ArrayOfTables(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(s, t)| same_table(s, t))
        }
        _ => false,
    }
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.value() == y.value(),
        (Value::Integer(x), Value::Integer(y)) => x.value() == y.value(),
        (Value::Float(x), Value::Float(y)) => x.value().to_bits() == y.value().to_bits(),
        (Value::Boolean(x), Value::Boolean(y)) => x.value() == y.value(),
        (Value::Datetime(x), Value::Datetime(y)) => x.value() == y.value(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(s, t)| same_value(s, t))
        }
        (Value::InlineTable(x), Value::InlineTable(y)) => same_table(x, y),
        _ => false,
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
        for b in [crlf.as_str(), quoted.as_str(), dotted] {
            assert!(same_meaning(a, b), "{b}");
        }
        assert!(!same_meaning(a, &a.replace("/x", "/y")));
        assert!(!same_meaning(a, "version = 2\n"));
        assert!(!same_meaning(
            a,
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = 1\n"
        ));
        assert!(!same_meaning(a, "not toml ="));
    }
}
