//! Loading the keys `[jwt]` names (`config::JwtConfig`) into [`TokenKeys`]: files read, keys
//! parsed and checked, kids derived. Done where the running state is built, and by `wxgate check`;
//! every error names the config key that is wrong.

use crate::config::{ConfigError, JwtConfig, JwtKeyInfo, KeySource};

use super::keys::{KeyMaterial, KeySpec, LoadedKey};
use super::{TokenKeys, TokenSettings};

impl TokenKeys {
    /// The signing key and the verify-only keys of `jwt`, ready to issue and verify tokens.
    pub fn load(jwt: &JwtConfig) -> Result<TokenKeys, ConfigError> {
        let signing = load_key(&jwt.signing, None)?;
        let verify_only = jwt
            .verify_keys
            .iter()
            .enumerate()
            .map(|(index, key)| load_key(key, Some(index)))
            .collect::<Result<_, _>>()?;
        let settings = TokenSettings {
            issuer: &jwt.issuer,
            audience: jwt.audience.as_deref(),
            ttl_secs: jwt.ttl_secs,
            leeway_secs: jwt.leeway_secs,
        };
        TokenKeys::new(settings, signing, verify_only)
            .map_err(|message| ConfigError::new("jwt.verify_keys", message))
    }
}

/// Reads and checks one key; `verify_index` is its place among the verify-only keys (`None`: the
/// signing key), which names it in errors.
fn load_key(info: &JwtKeyInfo, verify_index: Option<usize>) -> Result<LoadedKey, ConfigError> {
    let prefix = JwtKeyInfo::config_key(verify_index);
    let field = format!("{prefix}.{}", info.source.field());
    let pem;
    let material = match &info.source {
        KeySource::Secret(secret) => KeyMaterial::Secret(secret.expose().as_bytes()),
        KeySource::PrivateKeyFile(file) | KeySource::PublicKeyFile(file) => {
            pem = std::fs::read_to_string(file).map_err(|error| {
                ConfigError::new(&field, format!("cannot read {}: {error}", file.display()))
            })?;
            match info.source {
                KeySource::PublicKeyFile(_) => KeyMaterial::PublicKeyPem(&pem),
                _ => KeyMaterial::PrivateKeyPem(&pem),
            }
        }
    };
    let spec = KeySpec {
        algorithm: info.algorithm,
        material,
        kid: info.kid.as_deref(),
    };
    LoadedKey::load(&spec).map_err(|message| {
        let field = if message.starts_with("kid ") {
            format!("{prefix}.kid")
        } else {
            field
        };
        ConfigError::new(field, message)
    })
}
