//! Who a widget visitor is (§12): server-made visitor ids, and signed-in
//! users proved by their site's `user_hash`.
//!
//! A visitor id is 16 random bytes and a MAC of them under a key derived
//! from the JWT secret, so every edge recognises the ones any edge made, and
//! an id a client made up starts a new visitor instead of being believed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const RANDOM_LEN: usize = 16;
const TAG_LEN: usize = 16;

/// Makes and recognises visitor ids.
#[derive(Clone)]
pub struct VisitorIds {
    key: [u8; 32],
}

impl VisitorIds {
    pub fn new(jwt_secret: &str) -> Self {
        // A key of its own, so a visitor id is never a MAC a token could reuse.
        Self { key: mac(jwt_secret.as_bytes(), b"switchboard widget visitor ids") }
    }

    /// A new visitor's id.
    pub fn make(&self) -> String {
        let mut random = [0u8; RANDOM_LEN];
        getrandom::fill(&mut random).expect("the system's random source");
        self.with_tag(&random)
    }

    /// `id` when this server made it; otherwise a new visitor's.
    pub fn recognise(&self, id: Option<&str>) -> String {
        match id.and_then(|id| URL_SAFE_NO_PAD.decode(id).ok()) {
            Some(bytes) if bytes.len() == RANDOM_LEN + TAG_LEN => {
                let (random, tag) = bytes.split_at(RANDOM_LEN);
                let mut check = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key");
                check.update(random);
                if check.verify_truncated_left(tag).is_ok() {
                    return self.with_tag(random);
                }
                self.make()
            }
            _ => self.make(),
        }
    }

    fn with_tag(&self, random: &[u8]) -> String {
        let tag = mac(&self.key, random);
        let mut bytes = random.to_vec();
        bytes.extend_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

fn mac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Whether `user_hash` is the lowercase hex HMAC-SHA256 of `user_id` under
/// the site's identity secret, compared in constant time.
pub fn user_hash_matches(secret: &str, user_id: &str, user_hash: &str) -> bool {
    let Ok(hash) = hex::decode(user_hash) else { return false };
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(user_id.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ids_this_server_made_are_recognised() {
        let ids = VisitorIds::new("s3cret");
        let id = ids.make();
        assert_eq!(id.len(), 43);
        assert_ne!(id, ids.make());
        assert_eq!(ids.recognise(Some(&id)), id);
        assert_eq!(VisitorIds::new("s3cret").recognise(Some(&id)), id);
        assert_ne!(VisitorIds::new("other").recognise(Some(&id)), id);
        let mut forged = id.clone().into_bytes();
        forged[5] = if forged[5] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_ne!(ids.recognise(Some(&forged)), forged);
        for odd in [None, Some(""), Some("abc"), Some("é")] {
            assert_eq!(ids.recognise(odd).len(), 43);
        }
    }

    #[test]
    fn a_user_hash_is_the_hex_hmac_of_the_user_id() {
        let good = hex::encode(mac(b"site-secret", b"user-42"));
        assert!(user_hash_matches("site-secret", "user-42", &good));
        assert!(user_hash_matches("site-secret", "user-42", &good.to_uppercase()));
        assert!(!user_hash_matches("site-secret", "user-43", &good));
        assert!(!user_hash_matches("other", "user-42", &good));
        assert!(!user_hash_matches("site-secret", "user-42", &good[..62]));
        assert!(!user_hash_matches("site-secret", "user-42", "zz"));
    }
}
