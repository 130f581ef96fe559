//! OVH's request signature and the clock it is computed with.

use sha1::{Digest, Sha1};

/// `"$1$"` + lowercase hex SHA-1 of
/// `secret+consumer_key+METHOD+full_url+body+timestamp`, joined with `+`.
pub fn signature(
    application_secret: &str,
    consumer_key: &str,
    method: &str,
    full_url: &str,
    body: &[u8],
    timestamp: i64,
) -> String {
    let mut h = Sha1::new();
    for part in [application_secret, consumer_key, method, full_url] {
        h.update(part.as_bytes());
        h.update(b"+");
    }
    h.update(body);
    h.update(b"+");
    h.update(timestamp.to_string().as_bytes());
    format!("$1${}", hex::encode(h.finalize()))
}

/// Unix seconds of the local clock.
pub fn local_now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_sha1_of_the_plus_joined_parts() {
        // sha1("s+ck+GET+https://eu.api.ovh.com/1.0/me++1700000000")
        let mut h = Sha1::new();
        h.update(b"s+ck+GET+https://eu.api.ovh.com/1.0/me++1700000000");
        let want = format!("$1${}", hex::encode(h.finalize()));
        assert_eq!(
            signature(
                "s",
                "ck",
                "GET",
                "https://eu.api.ovh.com/1.0/me",
                b"",
                1_700_000_000
            ),
            want
        );
        assert!(want.starts_with("$1$") && want.len() == 43);
    }

    #[test]
    fn the_body_is_signed_byte_for_byte() {
        let a = signature("s", "ck", "POST", "u", br#"{"a":1}"#, 1);
        let b = signature("s", "ck", "POST", "u", br#"{"a": 1}"#, 1);
        assert_ne!(a, b);
    }
}
