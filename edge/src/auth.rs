//! Who is calling: JWT verification (HS256: `sub`, `role` and `exp`; optionally
//! `name`, `phone`, `email`, `conversations`, `site` and `nbf`) and what each
//! role may do.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use switchboard_proto::model::{Conversation, Customer, Role, Sender};

use crate::error::{ApiError, ErrorCode};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversations: Option<Vec<String>>,
    /// The widget site key a visitor session was opened with (§12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Makes each token unique: two sessions in one second get two tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    pub exp: u64,
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub user_id: String,
    pub role: Role,
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub conversations: Vec<String>,
    /// A widget visitor's session (its site key): its conversation starts
    /// with its first message, and it may start no other.
    pub site: Option<String>,
}

/// Why a caller was turned away; the messages are what clients see (the
/// `connect_error` message, the HTTP error's `message`), so they do not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    Required,
    Invalid,
    Expired,
    /// `nbf` is still in the future.
    NotYetValid,
}

impl AuthError {
    pub fn message(self) -> &'static str {
        match self {
            AuthError::Required => "token required",
            AuthError::Invalid => "invalid token",
            AuthError::Expired => "token expired",
            AuthError::NotYetValid => "token not yet valid",
        }
    }

    pub fn code(self) -> ErrorCode {
        match self {
            AuthError::Required => ErrorCode::TokenRequired,
            AuthError::Invalid => ErrorCode::InvalidToken,
            AuthError::Expired => ErrorCode::TokenExpired,
            AuthError::NotYetValid => ErrorCode::TokenNotYetValid,
        }
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for AuthError {}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::new(e.code(), e.message())
    }
}

#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    pub fn hs256(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self { key: DecodingKey::from_secret(secret.as_bytes()), validation }
    }

    pub fn verify(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        let token = token.map(str::trim).filter(|t| !t.is_empty()).ok_or(AuthError::Required)?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            _ => AuthError::Invalid,
        })?;
        let claims = data.claims;
        let role = Role::parse(&claims.role).ok_or(AuthError::Invalid)?;
        Ok(Identity {
            name: claims.name.unwrap_or_else(|| claims.sub.clone()),
            user_id: claims.sub,
            role,
            phone: claims.phone,
            email: claims.email,
            conversations: claims.conversations.unwrap_or_default(),
            site: claims.site,
        })
    }
}

/// Signs a token; `switchboard dev` uses it for its demo tokens.
pub fn mint(secret: &str, claims: &Claims) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("HS256 signing cannot fail")
}

impl Identity {
    pub fn sender(&self) -> Sender {
        Sender { id: self.user_id.clone(), role: self.role, name: self.name.clone() }
    }

    /// Customers are confined to their own conversations; staff see all.
    pub fn is_customer(&self) -> bool {
        self.role == Role::Customer
    }

    /// May this caller join, read and write in `conversation`? A customer only
    /// in its own: one whose customer it is. Listing an id in a token lets a
    /// customer create that conversation, never enter another customer's.
    pub fn may_access(&self, conversation: &Conversation) -> bool {
        !self.is_customer() || conversation.customer.id == self.user_id
    }

    /// Whether the token names this conversation (so it may be created for it).
    pub fn lists(&self, conversation_id: &str) -> bool {
        self.conversations.iter().any(|c| c == conversation_id)
    }

    /// A widget visitor's conversation: created by its first message, so
    /// that inboxes never fill with chats nobody wrote in.
    pub fn starts_on_first_message(&self, conversation_id: &str) -> bool {
        self.site.is_some() && self.is_customer() && self.lists(conversation_id)
    }

    /// This customer, as a conversation created for it records it.
    pub fn customer(&self) -> Customer {
        Customer {
            id: self.user_id.clone(),
            name: self.name.clone(),
            phone: self.phone.clone(),
            email: self.email.clone(),
        }
    }

    pub fn check_access(&self, conversation: &Conversation) -> Result<(), ApiError> {
        if self.may_access(conversation) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("not allowed in conversation {}", conversation.id)))
        }
    }

    pub fn require_staff(&self) -> Result<(), ApiError> {
        if self.is_customer() { Err(ApiError::forbidden("customers may not do this")) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "u1".into(),
            role: "customer".into(),
            name: None,
            phone: Some("521".into()),
            email: None,
            conversations: Some(vec!["c1".into()]),
            site: None,
            jti: None,
            exp,
        }
    }

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn a_good_token_gives_its_identity() {
        let token = mint("s3cret", &claims(now() + 60));
        let who = Verifier::hs256("s3cret").verify(Some(&token)).unwrap();
        assert_eq!(who.user_id, "u1");
        assert_eq!(who.role, Role::Customer);
        assert_eq!(who.name, "u1");
        assert!(who.lists("c1"));
    }

    #[test]
    fn each_refusal_says_why() {
        let verifier = Verifier::hs256("s3cret");
        assert_eq!(verifier.verify(None), Err(AuthError::Required));
        assert_eq!(verifier.verify(Some(" ")), Err(AuthError::Required));
        assert_eq!(verifier.verify(Some("garbage")), Err(AuthError::Invalid));
        let forged = mint("other", &claims(now() + 60));
        assert_eq!(verifier.verify(Some(&forged)), Err(AuthError::Invalid));
        let old = mint("s3cret", &claims(now() - 10));
        assert_eq!(verifier.verify(Some(&old)), Err(AuthError::Expired));
        let early = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({ "sub": "u1", "role": "customer", "exp": now() + 120, "nbf": now() + 60 }),
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert_eq!(verifier.verify(Some(&early)), Err(AuthError::NotYetValid));
        let mut admin = claims(now() + 60);
        admin.role = "admin".into();
        assert_eq!(verifier.verify(Some(&mint("s3cret", &admin))), Err(AuthError::Invalid));
    }
}
