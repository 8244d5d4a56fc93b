//! Query strings, decoded as browsers encode them (`form_urlencoded`), for the
//! places that read one parameter without a typed extractor: Socket.IO's
//! handshake and the demo page.

/// The first value of `name` in `query`, percent- and `+`-decoded.
pub fn param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_found_and_decoded() {
        let q = "EIO=4&transport=polling&token=a%2Eb&userPhone=%2B521&name=Ana+Lu";
        assert_eq!(param(q, "token").as_deref(), Some("a.b"));
        assert_eq!(param(q, "userPhone").as_deref(), Some("+521"));
        assert_eq!(param(q, "name").as_deref(), Some("Ana Lu"));
        assert_eq!(param(q, "missing"), None);
        assert_eq!(param("token=50%", "token").as_deref(), Some("50%"));
    }
}
