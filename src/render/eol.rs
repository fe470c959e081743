//! Line endings: lines regmirror adds to config.toml use the file's own line ending, so a CRLF
//! file stays CRLF (no mixed endings). Pure.

use similar::{ChangeTag, TextDiff};

/// True when most of `text`'s line breaks are `\r\n`.
pub fn is_crlf(text: &str) -> bool {
    let crlf = text.matches("\r\n").count();
    crlf > 0 && crlf * 2 >= text.matches('\n').count()
}

/// `edited` with every line that is not one of `base`'s own lines ending as `base`'s lines do.
/// Lines taken over from `base` keep their bytes, whatever their ending.
pub fn match_line_endings(base: &str, edited: &str) -> String {
    if !is_crlf(base) {
        return edited.to_string();
    }
    let diff = TextDiff::from_lines(base, edited);
    let mut out = String::with_capacity(edited.len() + edited.len() / 16);
    for change in diff.iter_all_changes() {
        let line = change.value();
        match change.tag() {
            ChangeTag::Delete => {}
            ChangeTag::Equal => out.push_str(line),
            ChangeTag::Insert => match line.strip_suffix('\n') {
                Some(body) if !body.ends_with('\r') => {
                    out.push_str(body);
                    out.push_str("\r\n");
                }
                _ => out.push_str(line),
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_lines_take_the_files_ending() {
        let base = "version = 2\r\n[a]\r\nx = 1\r\n";
        let edited = "version = 2\r\n[a]\r\nx = 1\r\n\n[b]\ny = 2\n";
        assert_eq!(
            match_line_endings(base, edited),
            "version = 2\r\n[a]\r\nx = 1\r\n\r\n[b]\r\ny = 2\r\n"
        );
        // An LF file is left alone, and so is an LF line the admin wrote in a CRLF file.
        assert_eq!(
            match_line_endings("a = 1\n", "a = 1\nb = 2\n"),
            "a = 1\nb = 2\n"
        );
        let mixed = "a = 1\r\nb = 2\n";
        assert_eq!(
            match_line_endings(mixed, "a = 1\r\nb = 2\nc = 3\n"),
            "a = 1\r\nb = 2\nc = 3\r\n"
        );
    }
}
