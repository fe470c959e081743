//! Certificates made with the `openssl` command line: a CA plus a server certificate it signed,
//! or a lone self-signed server certificate. Both carry `subjectAltName = IP:127.0.0.1,
//! DNS:localhost` (Go ignores the CN). P-256 keys: fast to make, accepted by Go and openssl.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::run;

/// Files of a server certificate, and the CA to trust it with (if any).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate (PEM); `None` for a self-signed server certificate.
    pub ca_cert: Option<PathBuf>,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TlsFiles {
    /// The CA certificate's PEM text (what goes into the Secret's CA_CERT).
    pub fn ca_pem(&self) -> String {
        let p = self.ca_cert.as_ref().expect("this certificate has no CA");
        std::fs::read_to_string(p).expect("read CA")
    }
}

const SAN: &str = "subjectAltName=IP:127.0.0.1,DNS:localhost";

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

/// `openssl req` with a new P-256 key (`key`, unencrypted) and subject `subj`: a self-signed
/// certificate valid 2 days with the `exts` (`-addext`) in `out` when `x509`, else a CSR.
fn req(dir: &Path, x509: bool, key: &str, out: &str, subj: &str, exts: &[&str]) {
    let mut args = vec![
        "req",
        if x509 { "-x509" } else { "-new" },
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
        "-out",
        out,
    ];
    if x509 {
        args.extend(["-days", "2"]);
    }
    args.extend(["-subj", subj]);
    for ext in exts {
        args.extend(["-addext", ext]);
    }
    openssl(dir, &args);
}

/// The files of a server certificate `server.crt` / `server.key` in `dir`.
fn server_files(dir: &Path, ca_cert: Option<PathBuf>) -> TlsFiles {
    TlsFiles {
        ca_cert,
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
    }
}

/// A CA (`ca.crt`) and a server certificate it signed (`server.crt`, `server.key`) in `dir`.
pub fn ca_signed(dir: &Path) -> TlsFiles {
    std::fs::create_dir_all(dir).unwrap();
    req(
        dir,
        true,
        "ca.key",
        "ca.crt",
        "/CN=regmirror e2e CA",
        &[
            "basicConstraints=critical,CA:TRUE",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    req(dir, false, "server.key", "server.csr", "/CN=localhost", &[]);
    std::fs::write(
        dir.join("server.ext"),
        format!(
            "{SAN}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    server_files(dir, Some(dir.join("ca.crt")))
}

/// A self-signed server certificate (`server.crt`, `server.key`) in `dir`: no CA trusts it.
pub fn self_signed(dir: &Path) -> TlsFiles {
    std::fs::create_dir_all(dir).unwrap();
    req(
        dir,
        true,
        "server.key",
        "server.crt",
        "/CN=localhost",
        &[SAN],
    );
    server_files(dir, None)
}
