//! The `regmirror` binary: everything lives in the library; see `regmirror --help`.

fn main() -> std::process::ExitCode {
    regmirror::cli::main()
}
