//! `[jwt]` validation: the signing key, the verify-only keys of a rotation, and the shared claim
//! settings, loaded into `TokenKeys` at start so a bad key stops the gateway before it serves.

use std::path::PathBuf;
use std::sync::Arc;

use jsonwebtoken::Algorithm;

use super::raw::{self, RawJwt, RawJwtKey};
use super::validate::positive;
use super::{ConfigError, JwtConfig, JwtKeyInfo, KeySource};
use crate::token::{KeyMaterial, KeySpec, LoadedKey, TokenKeys, TokenSettings};

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
        let ttl_secs = positive("jwt.ttl_secs", &self.ttl_secs, 7200)?;
        let leeway_secs = raw::number("jwt.leeway_secs", &self.leeway_secs, 30)?;
        let refresh_window_secs =
            raw::number("jwt.refresh_window_secs", &self.refresh_window_secs, 86_400)?;

        let signing_entry = KeyEntry {
            prefix: "jwt".into(),
            algorithm,
            secret: self.secret.as_deref(),
            private_key_file: self.private_key_file.as_deref(),
            public_key_file: None,
            kid: self.kid.as_deref(),
        };
        let (signing, _) = signing_entry.load()?;
        let mut verify_only = Vec::with_capacity(self.verify_keys.len());
        let mut verify_keys = Vec::with_capacity(self.verify_keys.len());
        for (index, entry) in self.verify_keys.iter().enumerate() {
            let (key, info) = KeyEntry::verify_only(index, entry, algorithm)?.load()?;
            verify_only.push(key);
            verify_keys.push(info);
        }
        let kid = signing.kid.clone();
        let settings = TokenSettings {
            issuer: &issuer,
            audience: audience.as_deref(),
            ttl_secs,
            leeway_secs,
        };
        let keys = TokenKeys::new(settings, signing, verify_only)
            .map_err(|message| ConfigError::new("jwt.verify_keys", message))?;
        Ok(JwtConfig {
            algorithm,
            issuer,
            audience,
            ttl_secs,
            leeway_secs,
            refresh_window_secs,
            private_key_file: self.private_key_file.as_ref().map(PathBuf::from),
            kid,
            verify_keys,
            keys: Arc::new(keys),
        })
    }
}

impl<'a> KeyEntry<'a> {
    fn verify_only(
        index: usize,
        entry: &'a RawJwtKey,
        default_algorithm: Algorithm,
    ) -> Result<Self, ConfigError> {
        let prefix = format!("jwt.verify_keys[{index}]");
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

    /// Reads and checks the key; errors name the key that is wrong.
    fn load(&self) -> Result<(LoadedKey, JwtKeyInfo), ConfigError> {
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
        let pem;
        let (field, material, source) = match (self.algorithm, self.secret, files) {
            (Algorithm::HS256, Some(secret), _) => (
                key("secret"),
                KeyMaterial::Secret(secret.as_bytes()),
                KeySource::Secret,
            ),
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
            (_, None, [(_, Some(file)), _]) => {
                pem = read_pem(&key("private_key_file"), file)?;
                let source = KeySource::PrivateKeyFile(PathBuf::from(file));
                let material = KeyMaterial::PrivateKeyPem(&pem);
                (key("private_key_file"), material, source)
            }
            (_, None, [_, (_, Some(file))]) => {
                pem = read_pem(&key("public_key_file"), file)?;
                let source = KeySource::PublicKeyFile(PathBuf::from(file));
                (
                    key("public_key_file"),
                    KeyMaterial::PublicKeyPem(&pem),
                    source,
                )
            }
            (_, None, _) => {
                return Err(ConfigError::new(
                    key("private_key_file"),
                    "RS256, ES256 and EdDSA need a PEM private key file",
                ))
            }
        };
        let spec = KeySpec {
            algorithm: self.algorithm,
            material,
            kid: self.kid,
        };
        let loaded = LoadedKey::load(&spec).map_err(|message| {
            let field = if message.starts_with("kid ") {
                key("kid")
            } else {
                field
            };
            ConfigError::new(field, message)
        })?;
        let info = JwtKeyInfo {
            algorithm: self.algorithm,
            kid: loaded.kid.clone(),
            source,
        };
        Ok((loaded, info))
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

fn read_pem(key: &str, file: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(file)
        .map_err(|error| ConfigError::new(key, format!("cannot read {file}: {error}")))
}
