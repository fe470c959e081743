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

fn ec_key_args() -> [&'static str; 4] {
    ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
}

/// A CA (`ca.crt`) and a server certificate it signed (`server.crt`, `server.key`) in `dir`.
pub fn ca_signed(dir: &Path) -> TlsFiles {
    std::fs::create_dir_all(dir).unwrap();
    let k = ec_key_args();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            k[0],
            k[1],
            k[2],
            k[3],
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=regmirror e2e CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            k[0],
            k[1],
            k[2],
            k[3],
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
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
    TlsFiles {
        ca_cert: Some(dir.join("ca.crt")),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
    }
}

/// A self-signed server certificate (`server.crt`, `server.key`) in `dir`: no CA trusts it.
pub fn self_signed(dir: &Path) -> TlsFiles {
    std::fs::create_dir_all(dir).unwrap();
    let k = ec_key_args();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            k[0],
            k[1],
            k[2],
            k[3],
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            SAN,
        ],
    );
    TlsFiles {
        ca_cert: None,
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
    }
}
