//! The byte-preserving printer: an edited document printed so that every line regmirror did
//! not touch keeps its exact bytes (toml_edit re-spells some keys and headers when it prints),
//! and the check that two texts are the same configuration. Pure.

use toml_edit::DocumentMut;

/// Printing a parsed document is not always the identity: toml_edit spells every key segment of
/// a `[table]` header (and of a dotted key) the way the *first* occurrence of that table spelled
/// it, so `[plugins."x"]` followed by `[plugins.'x'.registry]` prints the second header as
/// `[plugins."x".registry]`; `[ a . b ]` may lose spaces; interleaved dotted keys are regrouped.
/// Untouched admin lines must keep their bytes (and revert must be byte-identical), so when
/// `original` does not print back as itself, the edit (the line diff from the printed original to
/// `edited`) is carried over onto the original lines instead. Falls back to `edited` whenever the
/// result would not be the very same document.
pub fn keep_untouched_lines(original: &str, edited: &str) -> String {
    let Ok(doc) = original.parse::<DocumentMut>() else {
        return edited.to_string();
    };
    let printed = doc.to_string();
    drop(doc);
    if printed == original {
        return edited.to_string();
    }
    carry_onto(original, &printed, edited)
}

/// [`keep_untouched_lines`] when the original's print (`printed`, not the original itself) is
/// already known: replays the edit onto the original lines, and returns `edited` whenever the
/// result would not be the very same document (checked by parsing both).
pub fn carry_onto(original: &str, printed: &str, edited: &str) -> String {
    // Lines are compared with their newline; a last line without one gets one for the mapping.
    fn nl(s: &str) -> String {
        if s.is_empty() || s.ends_with('\n') {
            s.to_string()
        } else {
            format!("{s}\n")
        }
    }
    let Some(mut out) = carry_edit(&nl(original), &nl(printed), &nl(edited)) else {
        return edited.to_string();
    };
    // A missing final newline stays missing while the original's last line is still the last.
    let last_line = original.rsplit('\n').next().unwrap_or("");
    let keep_missing = !original.ends_with('\n') && out.ends_with(&format!("{last_line}\n"));
    if !edited.is_empty() && (!edited.ends_with('\n') || keep_missing) {
        out.pop();
    }
    if same_document(&out, edited) {
        out
    } else {
        edited.to_string()
    }
}

/// True when both texts parse to the same keys, values and visible tables (formatting aside).
fn same_document(a: &str, b: &str) -> bool {
    matches!((canonical(a), canonical(b)), (Some(x), Some(y)) if x == y)
}

/// A document's keys, values and explicit tables, formatting aside, sorted: two texts are the
/// same configuration when these are equal. `None` when the text does not parse.
pub fn canonical(text: &str) -> Option<Vec<String>> {
    fn walk(item: &toml_edit::Item, path: &str, out: &mut Vec<String>) {
        match item {
            toml_edit::Item::Value(v) => {
                let mut v = v.clone();
                v.decor_mut().clear();
                out.push(format!("{path} = {v}"));
            }
            toml_edit::Item::Table(t) => {
                if !t.is_implicit() && !t.is_dotted() {
                    out.push(format!("[{path}]"));
                }
                for (k, v) in t.iter() {
                    walk(v, &format!("{path}.{k:?}"), out);
                }
            }
            toml_edit::Item::ArrayOfTables(a) => {
                for (i, t) in a.iter().enumerate() {
                    for (k, v) in t.iter() {
                        walk(v, &format!("{path}[{i}].{k:?}"), out);
                    }
                }
            }
            toml_edit::Item::None => {}
        }
    }
    let doc = text.parse::<DocumentMut>().ok()?;
    let mut out = Vec::new();
    walk(doc.as_item(), "", &mut out);
    out.sort();
    Some(out)
}

/// What a line means when it is a table header or a dotted key (the key path as plain strings,
/// then the header's comment or the value as written); the line itself otherwise.
fn line_key(line: &str) -> String {
    let trimmed = line.trim_start();
    let Ok(doc) = line.parse::<DocumentMut>() else {
        return line.to_string();
    };
    let mut path = Vec::new();
    let mut item = doc.as_item();
    while let Some(t) = item.as_table_like() {
        let mut entries = t.iter();
        let (Some((k, v)), None) = (entries.next(), entries.next()) else {
            break;
        };
        path.push(k.to_string());
        item = v;
    }
    let path = format!("{path:?}");
    match item {
        toml_edit::Item::Table(t) if trimmed.starts_with('[') => {
            let comment = t.decor().suffix().and_then(|r| r.as_str()).unwrap_or("");
            format!("\0[{path}]{comment}")
        }
        toml_edit::Item::ArrayOfTables(a) if trimmed.starts_with("[[") => {
            let comment = a
                .get(0)
                .and_then(|t| t.decor().suffix().and_then(|r| r.as_str()))
                .unwrap_or("");
            format!("\0[[{path}]]{comment}")
        }
        toml_edit::Item::Value(v)
            if doc
                .as_table()
                .iter()
                .next()
                .is_some_and(|(_, i)| i.is_table()) =>
        {
            format!("\0{path} = {v}")
        }
        _ => line.to_string(),
    }
}

use similar::{DiffOp, TextDiff};

/// Lines with their newline.
fn lines(t: &str) -> Vec<&str> {
    t.split_inclusive('\n').collect()
}

/// Lines compared by what they mean where toml_edit may re-spell them (headers, dotted keys),
/// byte for byte otherwise.
fn keys(v: &[&str]) -> Vec<String> {
    v.iter().map(|l| line_key(l)).collect()
}

/// The line diff of two key lists. Patience diff anchors on unique lines (headers, admin
/// values), so an admin line is never taken for a moved one just because blank or marker lines
/// around it repeat.
fn diff_ops(a: &[String], b: &[String]) -> Vec<DiffOp> {
    let (a, b): (Vec<&str>, Vec<&str>) = (
        a.iter().map(String::as_str).collect(),
        b.iter().map(String::as_str).collect(),
    );
    let mut cfg = TextDiff::configure();
    cfg.algorithm(similar::Algorithm::Patience);
    cfg.diff_slices(&a, &b).ops().to_vec()
}

/// Printed line → original line, for the lines toml_edit printed in order.
fn printed_to_original(print_k: &[String], orig_k: &[String]) -> Vec<Option<usize>> {
    let mut to_orig = vec![None; print_k.len()];
    for op in diff_ops(print_k, orig_k) {
        if let DiffOp::Equal {
            old_index,
            new_index,
            len,
        } = op
        {
            for k in 0..len {
                to_orig[old_index + k] = Some(new_index + k);
            }
        }
    }
    to_orig
}

/// (old index, old len, new index, new len) of a non-equal op.
fn span(op: &DiffOp) -> Option<(usize, usize, usize, usize)> {
    match *op {
        DiffOp::Equal { .. } => None,
        DiffOp::Delete {
            old_index, old_len, ..
        } => Some((old_index, old_len, 0, 0)),
        DiffOp::Insert {
            old_index,
            new_index,
            new_len,
        } => Some((old_index, 0, new_index, new_len)),
        DiffOp::Replace {
            old_index,
            old_len,
            new_index,
            new_len,
        } => Some((old_index, old_len, new_index, new_len)),
    }
}

/// Where lines inserted before printed line `old_index` go among the original lines: before
/// the original of the printed line that follows (a header, or the comment above one), so that
/// lines toml_edit regrouped into the table before stay in that table; after the original of
/// the line before for a pure insertion; `None` when neither is certain.
fn insertion_point(
    to_orig: &[Option<usize>],
    orig_len: usize,
    old_index: usize,
    old_len: usize,
) -> Option<usize> {
    if old_index == to_orig.len() {
        return Some(orig_len);
    }
    if let Some(next) = to_orig[old_index] {
        return Some(next);
    }
    let prev = old_index.checked_sub(1).and_then(|i| to_orig[i]);
    (old_len == 0).then_some(prev.map(|p| p + 1)).flatten()
}

/// Replay the line edit `printed` → `edited` on `original` (whose printed form is `printed`).
/// `None` when an edited line has no certain place in `original`.
fn carry_edit(original: &str, printed: &str, edited: &str) -> Option<String> {
    let (orig, print, new) = (lines(original), lines(printed), lines(edited));
    let (orig_k, print_k, new_k) = (keys(&orig), keys(&print), keys(&new));
    let to_orig = printed_to_original(&print_k, &orig_k);
    let mut deleted = vec![false; orig.len()];
    // inserted[i]: lines that go before original line i (i == orig.len(): at the end).
    let mut inserted: Vec<Vec<&str>> = vec![Vec::new(); orig.len() + 1];
    for (old_index, old_len, new_index, new_len) in
        diff_ops(&print_k, &new_k).iter().filter_map(span)
    {
        for i in old_index..old_index + old_len {
            deleted[to_orig[i]?] = true;
        }
        if new_len > 0 {
            let at = insertion_point(&to_orig, orig.len(), old_index, old_len)?;
            inserted[at].extend_from_slice(&new[new_index..new_index + new_len]);
        }
    }
    let mut out = String::with_capacity(edited.len());
    for (i, line) in orig.iter().enumerate() {
        inserted[i].iter().for_each(|l| out.push_str(l));
        if !deleted[i] {
            out.push_str(line);
        }
    }
    inserted[orig.len()].iter().for_each(|l| out.push_str(l));
    Some(out)
}
