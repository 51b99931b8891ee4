//! Development certificates: a private CA and server certificates it signs, for `wxgate gen-cert`
//! and the tests. Nothing here is for production: real deployments use certificates from a
//! public or company CA.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The kind of key a server certificate gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA P-256 (the default: small and fast).
    Ecdsa,
    /// Ed25519.
    Ed25519,
    /// RSA 2048.
    Rsa,
}

impl std::str::FromStr for KeyType {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "ecdsa" => Ok(KeyType::Ecdsa),
            "ed25519" => Ok(KeyType::Ed25519),
            "rsa" => Ok(KeyType::Rsa),
            other => Err(format!("{other:?} is not one of ecdsa, ed25519, rsa")),
        }
    }
}

/// A certificate and its key, PEM-encoded; the chain holds the leaf then the CA.
pub struct IssuedCertificate {
    /// Leaf certificate followed by the CA certificate.
    pub chain_pem: String,
    /// The leaf's private key (PKCS#8).
    pub key_pem: String,
}

/// A private certificate authority for development.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, for clients to trust.
    pub cert_pem: String,
}

impl DevCa {
    /// Creates a new CA with a fresh ECDSA key.
    pub fn new(name: &str) -> Result<Self, String> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(to_text)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(to_text)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert_pem = params.self_signed(&key).map_err(to_text)?.pem();
        Ok(DevCa {
            issuer: Issuer::new(params, key),
            cert_pem,
        })
    }

    /// Issues a server certificate for `hosts` (DNS names or IP addresses).
    pub fn issue(&self, hosts: &[String], key_type: KeyType) -> Result<IssuedCertificate, String> {
        let key = match key_type {
            KeyType::Ecdsa => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyType::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
            KeyType::Rsa => {
                // ring cannot generate RSA keys; the rsa crate (already used for RS256) can.
                use rsa::pkcs8::{EncodePrivateKey, LineEnding};
                let private =
                    rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).map_err(to_text)?;
                let pem = private.to_pkcs8_pem(LineEnding::LF).map_err(to_text)?;
                KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256)
            }
        }
        .map_err(to_text)?;
        let mut params = CertificateParams::new(hosts.to_vec()).map_err(to_text)?;
        if let Some(first) = hosts.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let leaf = params.signed_by(&key, &self.issuer).map_err(to_text)?;
        Ok(IssuedCertificate {
            chain_pem: format!("{}{}", leaf.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
        })
    }
}

fn to_text(error: impl std::fmt::Display) -> String {
    error.to_string()
}

/// Writes `dev-ca.pem`, `server.pem` (chain) and `server-key.pem` into `folder` for `hosts`, and
/// returns the paths. The CA's key is not kept, so the CA can sign nothing else.
pub fn write_dev_certificates(
    folder: &std::path::Path,
    hosts: &[String],
    key_type: KeyType,
    overwrite: bool,
) -> Result<Vec<std::path::PathBuf>, String> {
    let paths = ["dev-ca.pem", "server.pem", "server-key.pem"].map(|name| folder.join(name));
    if !overwrite {
        if let Some(existing) = paths.iter().find(|path| path.exists()) {
            return Err(format!(
                "{} exists; pass --force to replace it",
                existing.display()
            ));
        }
    }
    let ca = DevCa::new("wxgate development CA")?;
    let issued = ca.issue(hosts, key_type)?;
    std::fs::create_dir_all(folder)
        .map_err(|error| format!("cannot create {}: {error}", folder.display()))?;
    let [ca_path, chain_path, key_path] = &paths;
    write(ca_path, &ca.cert_pem, 0o644)?;
    write(chain_path, &issued.chain_pem, 0o644)?;
    write(key_path, &issued.key_pem, 0o600)?;
    Ok(paths.to_vec())
}

fn write(path: &std::path::Path, contents: &str, mode: u32) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(path)
        .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    std::io::Write::write_all(&mut file, contents.as_bytes())
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}
