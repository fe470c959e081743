//! Printing a document: into a string sized for it, or compared with a text while printing
//! (nothing allocated), which is how a render learns that toml_edit prints the admin's file
//! back exactly.

use std::fmt::Write as _;

use toml_edit::DocumentMut;

/// True when `doc` prints exactly as `text`: compared piece by piece while printing, with
/// nothing allocated, and stopped at the first difference.
pub(super) fn prints_as(doc: &DocumentMut, text: &str) -> bool {
    let mut compare = Compare { rest: text };
    write!(compare, "{doc}").is_ok() && compare.rest.is_empty()
}

/// What is left of the text while printing; a piece that does not match stops the print.
struct Compare<'a> {
    rest: &'a str,
}

impl std::fmt::Write for Compare<'_> {
    fn write_str(&mut self, piece: &str) -> std::fmt::Result {
        self.rest = self.rest.strip_prefix(piece).ok_or(std::fmt::Error)?;
        Ok(())
    }
}

/// `doc` printed into a string sized for a file of about `len` bytes plus regmirror's entries,
/// so that printing a large file does not copy it again at every doubling of the string.
pub(super) fn sized(doc: &DocumentMut, len: usize) -> String {
    let mut out = String::with_capacity(len + len / 8 + 4096);
    write!(out, "{doc}").expect("printing into a String does not fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> DocumentMut {
        text.parse().expect("valid TOML")
    }

    #[test]
    fn a_parse_prints_as_its_own_text() {
        let text = "# admin\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"pause:3.9\" # pinned\n";
        assert!(prints_as(&doc(text), text));
    }

    #[test]
    fn a_different_longer_or_shorter_text_is_not_what_it_prints() {
        let text = "a = 1\nb = \"x\"\n";
        let d = doc(text);
        assert!(!prints_as(&d, "a = 1\nb = \"y\"\n"));
        assert!(
            !prints_as(&d, "a = 1\n"),
            "the print is longer than the text"
        );
        assert!(
            !prints_as(&d, "a = 1\nb = \"x\"\nc = 2\n"),
            "the text is longer than the print"
        );
    }

    #[test]
    fn an_edited_document_no_longer_prints_as_the_original() {
        let text = "a = 1\n";
        let mut d = doc(text);
        d["b"] = toml_edit::value(2);
        assert!(!prints_as(&d, text));
        assert_eq!(sized(&d, text.len()), d.to_string());
    }
}
