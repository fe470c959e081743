//! The registry auth handshake, pure: `WWW-Authenticate` challenges (RFC 7235: `Basic
//! realm="…"`, `Bearer realm="…",service="…",scope="…"`, several in one header), the token URL a
//! Bearer challenge asks for (distribution's token protocol, as Harbor answers it), and the
//! token in the answer (`token` or `access_token`). A token or password never enters a value
//! that prints: [`Token`] shows itself as `***`.

use std::collections::BTreeMap;
use std::fmt;

/// One challenge: the scheme (lower case) and its parameters (names lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// A bearer token from a token server: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The clear text, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lexer<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t') {
            self.i += 1;
        }
    }
    fn skip_ws_commas(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b',') {
            self.i += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.i < self.s.len() && is_tchar(self.s[self.i] as char) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
    /// A quoted string (after the opening quote), `\` escapes honoured.
    fn quoted(&mut self) -> String {
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                c => out.push(c),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    /// An unquoted value: up to a comma or white space.
    fn bare(&mut self) -> String {
        let start = self.i;
        while self.i < self.s.len() && !matches!(self.s[self.i], b',' | b' ' | b'\t') {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }
    /// After a `name`, whether `=` follows (a parameter) rather than a new challenge.
    fn at_equals(&self) -> bool {
        let mut j = self.i;
        while j < self.s.len() && matches!(self.s[j], b' ' | b'\t') {
            j += 1;
        }
        j < self.s.len() && self.s[j] == b'='
    }
}

/// Every challenge of one `WWW-Authenticate` header value, in order. Unknown syntax is
/// skipped, never an error.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut lx = Lexer {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        lx.skip_ws_commas();
        let Some(name) = lx.token() else {
            if lx.peek().is_none() {
                break;
            }
            lx.i += 1; // a stray character: skip it
            continue;
        };
        if lx.at_equals() && !out.is_empty() {
            // `name=value` of the current challenge.
            lx.skip_ws();
            lx.i += 1; // '='
            lx.skip_ws();
            let value = if lx.peek() == Some(b'"') {
                lx.i += 1;
                lx.quoted()
            } else {
                // Unquoted (a token, leniently anything up to `,` or a space).
                lx.bare()
            };
            if let Some(c) = out.last_mut() {
                c.params.insert(name.to_ascii_lowercase(), value);
            }
        } else {
            out.push(Challenge {
                scheme: name.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
        }
    }
    out
}

/// Percent-encoding of a query value (RFC 3986 unreserved characters kept).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The token URL for a Bearer challenge: the realm plus `service` and `scope` (the
/// challenge's own scope wins over `scope`, the one this request needs).
pub fn token_url(c: &Challenge, scope: Option<&str>) -> Option<String> {
    let realm = c.param("realm").filter(|r| !r.is_empty())?;
    let mut query = Vec::new();
    if let Some(s) = c.param("service") {
        query.push(format!("service={}", encode(s)));
    }
    if let Some(s) = c.param("scope").or(scope) {
        for one in s.split(' ').filter(|x| !x.is_empty()) {
            query.push(format!("scope={}", encode(one)));
        }
    }
    if query.is_empty() {
        return Some(realm.to_string());
    }
    let sep = if realm.contains('?') { '&' } else { '?' };
    Some(format!("{realm}{sep}{}", query.join("&")))
}

/// The token in a token server's JSON answer (`token`, else `access_token`).
pub fn parse_token(body: &[u8]) -> Option<Token> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    ["token", "access_token"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(|t| t.as_str()))
        .find(|t| !t.is_empty())
        .map(|t| Token(t.to_string()))
}

/// The challenge to answer: Bearer before Basic (a registry offering both takes either).
pub fn pick(challenges: &[Challenge]) -> Option<&Challenge> {
    challenges
        .iter()
        .find(|c| c.scheme == "bearer")
        .or_else(|| challenges.iter().find(|c| c.scheme == "basic"))
}

/// The repository of a manifest URL path (`/v2/<repo>/manifests/<ref>`), for the pull scope.
pub fn repository_of(path: &str) -> Option<&str> {
    let (before, _) = path.rsplit_once("/manifests/")?;
    let repo = before
        .strip_prefix("/v2/")
        .unwrap_or(before.trim_start_matches('/'));
    (!repo.is_empty()).then_some(repo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_bearer_challenges() {
        let c = parse_challenges(r#"Basic realm="regmirror-e2e""#);
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].scheme.as_str(), c[0].param("realm")),
            ("basic", Some("regmirror-e2e"))
        );
        let h = r#"Bearer realm="https://harbor.example.org/service/token",service="harbor-registry",scope="repository:library/nginx:pull""#;
        let c = parse_challenges(h);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].param("service"), Some("harbor-registry"));
        assert_eq!(c[0].param("scope"), Some("repository:library/nginx:pull"));
        assert_eq!(
            token_url(&c[0], None).unwrap(),
            "https://harbor.example.org/service/token?service=harbor-registry&scope=repository%3Alibrary%2Fnginx%3Apull"
        );
    }

    #[test]
    fn several_challenges_quotes_and_case() {
        let c = parse_challenges(
            r#"Negotiate, BASIC Realm="a \"b\", c" , bearer realm=https://t/x?a=1, service=s"#,
        );
        let schemes: Vec<&str> = c.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["negotiate", "basic", "bearer"]);
        assert_eq!(c[1].param("realm"), Some("a \"b\", c"));
        assert_eq!(pick(&c).unwrap().scheme, "bearer");
        // A realm that holds a query gets `&`; the request's scope when the challenge has none.
        let u = token_url(&c[2], Some("repository:a/b:pull")).unwrap();
        assert!(
            u.starts_with("https://t/x?a=1&service=s&scope=repository"),
            "{u}"
        );
        assert!(parse_challenges("").is_empty());
        assert!(pick(&parse_challenges("Negotiate abc==")).is_none());
        assert!(token_url(&parse_challenges("Bearer service=x")[0], None).is_none());
    }

    #[test]
    fn tokens_and_scopes() {
        assert_eq!(parse_token(br#"{"token":"t1"}"#).unwrap().expose(), "t1");
        assert_eq!(
            parse_token(br#"{"access_token":"t2","token":""}"#)
                .unwrap()
                .expose(),
            "t2"
        );
        assert!(parse_token(b"<html>").is_none());
        assert_eq!(
            format!("{:?}", parse_token(br#"{"token":"t1"}"#)),
            "Some(\"***\")"
        );
        assert_eq!(
            repository_of("/v2/airgap-images/docker.io/library/tiny/manifests/1"),
            Some("airgap-images/docker.io/library/tiny")
        );
        assert_eq!(
            repository_of("/p/library/tiny/manifests/1"),
            Some("p/library/tiny")
        );
        assert_eq!(repository_of("/v2/"), None);
    }
}
