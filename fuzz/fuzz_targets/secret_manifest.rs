//! Arbitrary bytes as a Secret manifest: parsing never panics, and a spec that validates never
//! carries the password into its Debug/JSON forms.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(secret) = regmirror::spec::secret_data_from_manifest(&text, "registry-info", None)
        && let Ok(spec) = regmirror::spec::parse_spec(&secret)
        && let Some(c) = &spec.credentials
        && c.password.expose().len() >= 8
    {
        assert!(!format!("{spec:?}").contains(c.password.expose()));
    }
});
