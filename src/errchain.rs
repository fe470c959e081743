//! One way to show an error to a person: its message, then each source's message that is not
//! already part of it, joined by `: ` (tonic's transport error alone says only "transport
//! error"). Pure.

/// `e` and its sources joined by `: `.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}
