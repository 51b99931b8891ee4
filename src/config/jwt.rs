//! `[jwt]` as plain data: the shared claim settings, the signing key and the verify-only keys of
//! a rotation, each as its algorithm, its kid when set, and where the key is (a secret or a file).
//! `token` loads the keys from this when the running state is built (`TokenKeys::load`), so a
//! key that cannot be read or used still stops the gateway, and `wxgate check`, naming its key.

use std::path::PathBuf;

use jsonwebtoken::Algorithm;

use super::raw::{self, RawJwt, RawJwtKey};
use super::validate::positive;
use super::{ConfigError, Secret};

/// `[jwt]` settings.
#[derive(Clone, Debug)]
pub struct JwtConfig {
    /// The pinned algorithm.
    pub algorithm: Algorithm,
    /// `iss` written and required.
    pub issuer: String,
    /// `aud` written and required, when set.
    pub audience: Option<String>,
    /// Lifetime of issued tokens.
    pub ttl_secs: u64,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// How long after expiry a token may still be refreshed.
    pub refresh_window_secs: u64,
    /// The signing key: `secret`, `private_key_file` and `kid` of `[jwt]` itself.
    pub signing: JwtKeyInfo,
    /// `[[jwt.verify_keys]]`: keys that verify but never sign (a rotation's old or next key).
    pub verify_keys: Vec<JwtKeyInfo>,
}

/// One key as configured: the signing key or a verify-only one.
#[derive(Clone, Debug)]
pub struct JwtKeyInfo {
    /// The algorithm this key signs or verifies, and only this one.
    pub algorithm: Algorithm,
    /// The key id tokens name it by, when configured; derived from the key otherwise.
    pub kid: Option<String>,
    /// Where the key is.
    pub source: KeySource,
}

impl JwtKeyInfo {
    /// The key's name in the config (`jwt` or `jwt.verify_keys[N]`) for error messages, given
    /// its place among the verify-only keys (`None`: the signing key).
    pub fn config_key(verify_index: Option<usize>) -> String {
        match verify_index {
            Some(index) => format!("jwt.verify_keys[{index}]"),
            None => "jwt".to_string(),
        }
    }
}

/// Where a JWT key is.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// An HS256 secret (never shown).
    Secret(Secret),
    /// A PEM private key file.
    PrivateKeyFile(PathBuf),
    /// A PEM public key file (verify-only keys).
    PublicKeyFile(PathBuf),
}

impl KeySource {
    /// The config key that sets it (`secret`, `private_key_file`, `public_key_file`).
    pub fn field(&self) -> &'static str {
        match self {
            KeySource::Secret(_) => "secret",
            KeySource::PrivateKeyFile(_) => "private_key_file",
            KeySource::PublicKeyFile(_) => "public_key_file",
        }
    }
}

/// One key as written: the `[jwt]` table itself (the signing key) or a `[[jwt.verify_keys]]` entry.
struct KeyEntry<'a> {
    /// `jwt` or `jwt.verify_keys[N]`, for error messages.
    prefix: String,
    algorithm: Algorithm,
    secret: Option<&'a str>,
    private_key_file: Option<&'a str>,
    /// Only verify-only keys may be public keys.
    public_key_file: Option<&'a str>,
    kid: Option<&'a str>,
}

impl RawJwt {
    pub(super) fn validate(&self) -> Result<JwtConfig, ConfigError> {
        let algorithm = algorithm(
            "jwt.algorithm",
            self.algorithm.as_deref().unwrap_or("HS256"),
        )?;
        let issuer = self.issuer.clone().unwrap_or_else(|| "wxgate".to_string());
        if issuer.is_empty() {
            return Err(ConfigError::new("jwt.issuer", "must not be empty"));
        }
        let audience = self
            .audience
            .clone()
            .filter(|audience| !audience.is_empty());
        let signing = KeyEntry {
            prefix: JwtKeyInfo::config_key(None),
            algorithm,
            secret: self.secret.as_deref(),
            private_key_file: self.private_key_file.as_deref(),
            public_key_file: None,
            kid: self.kid.as_deref(),
        }
        .validate()?;
        let verify_keys = self
            .verify_keys
            .iter()
            .enumerate()
            .map(|(index, entry)| KeyEntry::verify_only(index, entry, algorithm)?.validate())
            .collect::<Result<_, _>>()?;
        Ok(JwtConfig {
            algorithm,
            issuer,
            audience,
            ttl_secs: positive("jwt.ttl_secs", &self.ttl_secs, 7200)?,
            leeway_secs: raw::number("jwt.leeway_secs", &self.leeway_secs, 30)?,
            refresh_window_secs: raw::number(
                "jwt.refresh_window_secs",
                &self.refresh_window_secs,
                86_400,
            )?,
            signing,
            verify_keys,
        })
    }
}

impl<'a> KeyEntry<'a> {
    fn verify_only(
        index: usize,
        entry: &'a RawJwtKey,
        default_algorithm: Algorithm,
    ) -> Result<Self, ConfigError> {
        let prefix = JwtKeyInfo::config_key(Some(index));
        let algorithm = match entry.algorithm.as_deref() {
            Some(name) => algorithm(&format!("{prefix}.algorithm"), name)?,
            None => default_algorithm,
        };
        Ok(KeyEntry {
            prefix,
            algorithm,
            secret: entry.secret.as_deref(),
            private_key_file: entry.private_key_file.as_deref(),
            public_key_file: entry.public_key_file.as_deref(),
            kid: entry.kid.as_deref(),
        })
    }

    /// Which one kind of key the entry gives, fitting its algorithm; errors name the key that is
    /// wrong. Reading and checking the key itself is `TokenKeys::load`'s.
    fn validate(&self) -> Result<JwtKeyInfo, ConfigError> {
        let prefix = &self.prefix;
        let key = |name: &str| format!("{prefix}.{name}");
        let files = [
            ("private_key_file", self.private_key_file),
            ("public_key_file", self.public_key_file),
        ];
        let given: Vec<&str> = files
            .iter()
            .filter(|(_, value)| value.is_some())
            .map(|(name, _)| *name)
            .chain(self.secret.map(|_| "secret"))
            .collect();
        if given.len() > 1 {
            return Err(ConfigError::new(
                key(given[0]),
                format!("give only one of {}", given.join(", ")),
            ));
        }
        let source = match (self.algorithm, self.secret, files) {
            (Algorithm::HS256, Some(secret), _) => KeySource::Secret(Secret::new(secret)),
            (Algorithm::HS256, None, _) => {
                return Err(ConfigError::new(
                    key("secret"),
                    "HS256 needs a secret of at least 32 bytes (set WXGATE_JWT__SECRET)",
                ))
            }
            (_, Some(_), _) => {
                return Err(ConfigError::new(
                    key("secret"),
                    "only HS256 uses a shared secret; use a PEM key file",
                ))
            }
            (_, None, [(_, Some(file)), _]) => KeySource::PrivateKeyFile(PathBuf::from(file)),
            (_, None, [_, (_, Some(file))]) => KeySource::PublicKeyFile(PathBuf::from(file)),
            (_, None, _) => {
                return Err(ConfigError::new(
                    key("private_key_file"),
                    "RS256, ES256 and EdDSA need a PEM private key file",
                ))
            }
        };
        Ok(JwtKeyInfo {
            algorithm: self.algorithm,
            kid: self.kid.map(str::to_string),
            source,
        })
    }
}

/// One of the supported algorithm names.
fn algorithm(key: &str, name: &str) -> Result<Algorithm, ConfigError> {
    match name {
        "HS256" => Ok(Algorithm::HS256),
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => Err(ConfigError::new(
            key,
            format!("{other:?} is not one of HS256, RS256, ES256, EdDSA"),
        )),
    }
}
