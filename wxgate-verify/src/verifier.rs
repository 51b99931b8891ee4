//! What a credential must be to pass: the gateway's signature (the key pinned to its algorithm),
//! the right `typ`, the gateway's `iss`, this service's `aud`, an `exp` not passed, and a `sub`.

use std::sync::Arc;
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::error::Refusal;
use crate::keys::{Key, KeySource, KeyStore};
use crate::{Source, WxgateIdentity, ASSERTION_HEADER, ASSERTION_TYPE};

/// Credentials longer than this are refused unread: nothing the gateway makes comes close.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// What a request may present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accept {
    /// Only the gateway's identity assertion (the default).
    Assertion,
    /// The assertion, or else a wxgate client token (`Authorization: Bearer`), for a service
    /// that clients also call without the gateway. A client token is checked for its signature,
    /// issuer, expiry (and audience when configured) only: a logout at the gateway does not
    /// reach it.
    AssertionOrClientToken,
}

/// Verifies wxgate credentials; shared by every request (cheap to clone).
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    keys: KeyStore,
    issuer: String,
    audience: String,
    client_audience: Option<String>,
    header: HeaderName,
    accept: Accept,
    leeway_secs: u64,
}

/// Sets a [`Verifier`] up: where the keys are, and what the credentials must say.
pub struct VerifierBuilder {
    source: Result<KeySource, String>,
    issuer: String,
    audience: Option<String>,
    client_audience: Option<String>,
    header: String,
    accept: Accept,
    leeway_secs: u64,
    refetch_interval: Duration,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: String,
    unionid: Option<String>,
    appid: Option<String>,
    app: Option<String>,
    platform: Option<String>,
    #[serde(default)]
    exp: u64,
}

impl Verifier {
    /// A verifier whose keys are the gateway's JWKS at `jwks_url`
    /// (`https://gateway/.well-known/jwks.json`): RS256, ES256 and EdDSA gateways.
    pub fn builder(jwks_url: impl Into<String>) -> VerifierBuilder {
        // reqwest is built without a TLS provider of its own: ring's, as the gateway's, unless the
        // program installed another.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| format!("cannot build the JWKS client: {error}"));
        let source = client.map(|client| KeySource::Jwks {
            url: jwks_url.into(),
            client,
        });
        VerifierBuilder::new(source)
    }

    /// A verifier for an HS256 gateway, with its `[jwt] secret` (which this service then holds
    /// too: prefer an asymmetric algorithm when backends verify).
    pub fn builder_with_secret(secret: impl AsRef<[u8]>) -> VerifierBuilder {
        let key = Key {
            algorithm: Algorithm::HS256,
            decoding: DecodingKey::from_secret(secret.as_ref()),
        };
        VerifierBuilder::new(Ok(KeySource::Secret(key)))
    }

    /// The identity a request's credentials vouch for: the assertion header, or (where accepted
    /// and no assertion came) the bearer token.
    pub async fn verify_request(&self, headers: &HeaderMap) -> Result<WxgateIdentity, Refusal> {
        let inner = &self.inner;
        if let Some(value) = single(headers, &inner.header)? {
            return self.verify_assertion(value).await;
        }
        if inner.accept == Accept::AssertionOrClientToken {
            if let Some(value) = single(headers, &AUTHORIZATION)? {
                let token = value
                    .strip_prefix("Bearer ")
                    .ok_or(Refusal::Invalid("not a Bearer token"))?;
                return self.verify_client_token(token.trim()).await;
            }
        }
        Err(Refusal::Missing)
    }

    /// Verifies an identity assertion made for this service's audience.
    pub async fn verify_assertion(&self, token: &str) -> Result<WxgateIdentity, Refusal> {
        let audience = Some(self.inner.audience.as_str());
        self.check(token, Some(ASSERTION_TYPE), audience, Source::Assertion)
            .await
    }

    /// Verifies a wxgate client token (typed `JWT`, or untyped).
    pub async fn verify_client_token(&self, token: &str) -> Result<WxgateIdentity, Refusal> {
        let audience = self.inner.client_audience.as_deref();
        self.check(token, None, audience, Source::ClientToken).await
    }

    async fn check(
        &self,
        token: &str,
        typ: Option<&str>,
        audience: Option<&str>,
        source: Source,
    ) -> Result<WxgateIdentity, Refusal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Refusal::Invalid("too large"));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| Refusal::Invalid("malformed"))?;
        let typed_right = match (typ, header.typ.as_deref()) {
            (Some(expected), Some(typ)) => typ == expected,
            (Some(_), None) => false,
            (None, None) => true,
            (None, Some(typ)) => typ.eq_ignore_ascii_case("JWT"),
        };
        if !typed_right {
            return Err(Refusal::Invalid(match typ {
                Some(_) => "not an identity assertion",
                None => "not a client token",
            }));
        }
        if header.crit.is_some() || header.enc.is_some() || header.zip.is_some() {
            return Err(Refusal::Invalid("unsupported header"));
        }
        let key = self.inner.keys.key(header.kid.as_deref()).await?;
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = self.inner.leeway_secs;
        validation.set_issuer(&[self.inner.issuer.as_str()]);
        let mut required = vec!["exp", "iss", "sub"];
        match audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|error| Refusal::Invalid(reason(error.kind())))?
            .claims;
        if claims.sub.is_empty() {
            return Err(Refusal::Invalid("empty subject"));
        }
        Ok(WxgateIdentity {
            openid: claims.sub,
            unionid: claims.unionid,
            appid: claims.appid,
            app: claims.app,
            platform: claims.platform.unwrap_or_else(|| "wechat".into()),
            expires_at: claims.exp,
            source,
        })
    }
}

impl VerifierBuilder {
    fn new(source: Result<KeySource, String>) -> Self {
        VerifierBuilder {
            source,
            issuer: "wxgate".into(),
            audience: None,
            client_audience: None,
            header: ASSERTION_HEADER.into(),
            accept: Accept::Assertion,
            leeway_secs: 5,
            refetch_interval: Duration::from_secs(30),
        }
    }

    /// The gateway's `[jwt] issuer` (default "wxgate").
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// This service's audience: its route's `audience` in the gateway (default the route's
    /// prefix). Required.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// The header the assertion comes in (`[identity] assertion_header`).
    pub fn header(mut self, name: impl Into<String>) -> Self {
        self.header = name.into();
        self
    }

    /// What a request may present (default: the assertion only).
    pub fn accept(mut self, accept: Accept) -> Self {
        self.accept = accept;
        self
    }

    /// The `aud` client tokens must carry (the gateway's `[jwt] audience`), when it sets one.
    pub fn client_audience(mut self, audience: impl Into<String>) -> Self {
        self.client_audience = Some(audience.into());
        self
    }

    /// Clock skew tolerated on `exp` and `nbf` (default 5 s).
    pub fn leeway_secs(mut self, seconds: u64) -> Self {
        self.leeway_secs = seconds;
        self
    }

    /// The shortest time between two JWKS fetches (default 30 s): a token naming an unknown key
    /// fetches the set again at most this often.
    pub fn refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// The verifier; an error names what is missing or wrong.
    pub fn build(self) -> Result<Verifier, String> {
        let source = self.source?;
        let audience = self
            .audience
            .filter(|audience| !audience.is_empty())
            .ok_or("the audience is required: the gateway route's `audience` (or its prefix)")?;
        let header = HeaderName::from_bytes(self.header.as_bytes())
            .map_err(|_| format!("{:?} is not a header name", self.header))?;
        Ok(Verifier {
            inner: Arc::new(Inner {
                keys: KeyStore::new(source, self.refetch_interval),
                issuer: self.issuer,
                audience,
                client_audience: self.client_audience,
                header,
                accept: self.accept,
                leeway_secs: self.leeway_secs,
            }),
        })
    }
}

/// A header that must come at most once, as text.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, Refusal> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Refusal::Invalid("sent more than once"));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| Refusal::Invalid("malformed"))
}

/// Words for a refused token, safe to show.
fn reason(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not valid yet",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "made for another audience",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm => "algorithm not accepted",
        ErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
        _ => "malformed",
    }
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use http::HeaderValue;
    use jsonwebtoken::{EncodingKey, Header};

    use super::*;

    const SECRET: &str = "a-shared-secret-that-is-at-least-32-bytes";

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn signed(typ: Option<&str>, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = typ.map(str::to_string);
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    fn assertion(audience: &str, exp: u64) -> String {
        let claims = serde_json::json!({
            "iss": "wxgate", "sub": "o1", "aud": audience, "exp": exp, "iat": now(),
            "unionid": "u1", "appid": "wx1", "app": "shop", "platform": "qq",
        });
        signed(Some(ASSERTION_TYPE), claims)
    }

    fn client_token() -> String {
        let claims = serde_json::json!({ "iss": "wxgate", "sub": "o1", "exp": now() + 60 });
        signed(Some("JWT"), claims)
    }

    fn verifier(accept: Accept) -> Verifier {
        Verifier::builder_with_secret(SECRET)
            .audience("orders")
            .accept(accept)
            .build()
            .unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[tokio::test]
    async fn an_assertion_for_this_audience_passes_with_its_identity() {
        let verifier = verifier(Accept::Assertion);
        let token = assertion("orders", now() + 60);
        let who = verifier
            .verify_request(&headers(&[("X-Wxgate-Assertion", &token)]))
            .await
            .unwrap();
        assert_eq!(who.openid, "o1");
        assert_eq!(who.unionid.as_deref(), Some("u1"));
        assert_eq!(who.app.as_deref(), Some("shop"));
        assert_eq!(who.platform, "qq");
        assert_eq!(who.source, Source::Assertion);
        assert!(!format!("{who:?}").contains("o1"), "no ids in Debug");
    }

    #[tokio::test]
    async fn what_is_not_a_fresh_assertion_for_this_audience_is_refused() {
        let verifier = verifier(Accept::Assertion);
        let cases = [
            (assertion("other", now() + 60), "made for another audience"),
            (assertion("orders", now() - 60), "expired"),
            (client_token(), "not an identity assertion"),
            (
                signed(None, serde_json::json!({})),
                "not an identity assertion",
            ),
        ];
        for (token, why) in cases {
            let refused = verifier
                .verify_request(&headers(&[("X-Wxgate-Assertion", &token)]))
                .await;
            assert_eq!(refused, Err(Refusal::Invalid(why)), "{why}");
        }
        let twice = assertion("orders", now() + 60);
        let refused = verifier
            .verify_request(&headers(&[
                ("X-Wxgate-Assertion", &twice),
                ("X-Wxgate-Assertion", &twice),
            ]))
            .await;
        assert_eq!(refused, Err(Refusal::Invalid("sent more than once")));
        // A client token is no credential here, even as a bearer token.
        let bearer = format!("Bearer {}", client_token());
        let refused = verifier
            .verify_request(&headers(&[("Authorization", &bearer), ("X-OpenId", "o1")]))
            .await;
        assert_eq!(refused, Err(Refusal::Missing));
    }

    #[tokio::test]
    async fn a_client_token_passes_only_where_accepted_and_never_as_an_assertion() {
        let verifier = verifier(Accept::AssertionOrClientToken);
        let bearer = format!("Bearer {}", client_token());
        let who = verifier
            .verify_request(&headers(&[("Authorization", &bearer)]))
            .await
            .unwrap();
        assert_eq!(
            (who.openid.as_str(), who.source),
            ("o1", Source::ClientToken)
        );
        // An assertion presented as a client token is refused.
        let bearer = format!("Bearer {}", assertion("orders", now() + 60));
        let refused = verifier
            .verify_request(&headers(&[("Authorization", &bearer)]))
            .await;
        assert_eq!(refused, Err(Refusal::Invalid("not a client token")));
        // The assertion wins when both come.
        let token = assertion("orders", now() + 60);
        let who = verifier
            .verify_request(&headers(&[
                ("Authorization", "Bearer garbage"),
                ("X-Wxgate-Assertion", &token),
            ]))
            .await
            .unwrap();
        assert_eq!(who.source, Source::Assertion);
    }

    #[test]
    fn a_verifier_needs_an_audience_and_a_real_header_name() {
        assert!(Verifier::builder_with_secret(SECRET).build().is_err());
        let bad_header = Verifier::builder_with_secret(SECRET)
            .audience("a")
            .header("bad name");
        assert!(bad_header.build().is_err());
    }
}
