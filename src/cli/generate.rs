//! Shell completions and the man page, generated from the clap definitions ([`super::args`]):
//! `regmirror completions <shell>` and `regmirror man` (both hidden). The `.deb` ships the
//! generated files from `packaging/completions/` and `packaging/man/`; `tests/packaging.rs`
//! checks that they are what this binary generates (`REGMIRROR_BLESS=1` rewrites them).

use std::io::Write;

use clap::CommandFactory;

use super::args::Cli;
use crate::observe::build;

/// The command as documented: the package version without a commit, so that the generated
/// files do not depend on how the binary was built.
fn command() -> clap::Command {
    let mut cmd = Cli::command().version(build::VERSION);
    cmd.build();
    cmd
}

/// Completions for `shell` (bash, zsh, fish, elvish, powershell).
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command(), "regmirror", &mut out);
    out
}

/// Write `bytes` to stdout; a closed pipe (`| head`) is not an error.
pub fn print(bytes: &[u8]) -> std::io::Result<()> {
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

const EXIT_STATUS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success; for \fBdiff\fR: no change.
.TP
\fB1\fR
\fBdiff\fR: there are changes; \fBcheck\fR: a mirror endpoint or image check failed.
.TP
\fB2\fR
An error, with the reason on standard error; nothing was changed (a failed health check after
\fBapply\fR is rolled back first).
"#;

const TRAILER: &str = r#".SH ENVIRONMENT
Every flag can also be set from \fBREGMIRROR_\fR\fIFLAG\fR (for example \fBREGMIRROR_CONFIG\fR),
as listed with each option. \fBNO_COLOR\fR turns off colour in \fBdiff\fR; \fBREGMIRROR_LOG\fR
(or \fBRUST_LOG\fR) sets the log filter of \fBrun\fR; \fBKUBECONFIG\fR is read by
\fBrun\fR and \fBdiff \-\-from\-cluster\fR when no \fB\-\-kubeconfig\fR is given.
.SH FILES
.TP
\fI/etc/default/regmirror\fR
Settings of the systemd unit \fBregmirror.service\fR (edge hosts).
.TP
\fI/etc/containerd/config.toml\fR, \fI/etc/containerd/certs.d\fR
What regmirror edits.
.TP
\fI/var/lib/regmirror\fR
Its state and the backups \fBrevert\fR restores from.
.SH "SEE ALSO"
\fBcontainerd\fR(8), \fBcontainerd\-config.toml\fR(5), \fBsystemctl\fR(1);
\fI/usr/share/doc/regmirror/README.md\fR and \fIREADME.Debian\fR.
"#;

/// Render `section` of `man` into a string.
fn section(f: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
    let mut buf = Vec::new();
    f(&mut buf).expect("rendering into memory");
    String::from_utf8(buf).expect("roff is UTF-8")
}

/// One man page for the whole program (section 1): name, synopsis, description, then every
/// visible command with its synopsis and options, exit status, environment, files.
pub fn man() -> Vec<u8> {
    let cmd = command();
    let top = clap_mangen::Man::new(cmd.clone()).source(format!("regmirror {}", build::VERSION));
    let mut page = String::new();
    page += &section(|w| top.render_title(w));
    page += &section(|w| top.render_name_section(w));
    page += &section(|w| top.render_synopsis_section(w));
    page += &section(|w| top.render_description_section(w));
    page += ".SH COMMANDS\n";
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name();
        let man = clap_mangen::Man::new(sub.clone());
        page += &format!(".SS \"regmirror {name}\"\n");
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            page += &roff_text(&about.to_string());
        }
        // The command's own SYNOPSIS and OPTIONS, as paragraphs of this subsection.
        page += &section(|w| man.render_synopsis_section(w)).replacen(".SH SYNOPSIS\n", ".PP\n", 1);
        page +=
            &section(|w| man.render_options_section(w)).replace(".SH OPTIONS\n", ".PP\nOptions:\n");
    }
    page += EXIT_STATUS;
    page += TRAILER;
    page += &section(|w| top.render_version_section(w));
    page.into_bytes()
}

/// Plain text as a roff paragraph (a leading `.` or `'` escaped, backslashes doubled).
fn roff_text(text: &str) -> String {
    let mut s = String::from(".PP\n");
    for line in text.lines() {
        let line = line.replace('\\', "\\e");
        if line.starts_with('.') || line.starts_with('\'') {
            s.push_str("\\&");
        }
        s.push_str(&line);
        s.push('\n');
    }
    s
}
