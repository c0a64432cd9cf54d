//! Test certificates made on the fly (rcgen, ring provider): a CA, and node certificates it
//! signs for loopback, written as PEM files the way an operator would hand them to a node.

use std::path::{Path, PathBuf};

use natrix_server::TlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate authority for one test.
pub struct TestCa {
    name: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate signed by a [`TestCa`], its key, and where all three were written.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    /// A new self-signed CA named `name` (its common name, and the prefix of its files).
    pub fn new(name: &str) -> anyhow::Result<TestCa> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(TestCa {
            name: name.to_string(),
            issuer,
        })
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Issues a certificate for `localhost` and `127.0.0.1` that serves as both a server and a
    /// client certificate (what a cluster node needs), and writes the CA, the certificate and
    /// its key as `<ca>-ca.pem`, `<ca>-<name>.pem`, `<ca>-<name>-key.pem` in `dir`.
    pub fn issue(&self, dir: &Path, name: &str) -> anyhow::Result<TlsFiles> {
        self.issue_for(dir, name, &["localhost", "127.0.0.1"])
    }

    /// [`TestCa::issue`] with other subject alternative names (DNS names or IP addresses).
    pub fn issue_for(&self, dir: &Path, name: &str, sans: &[&str]) -> anyhow::Result<TlsFiles> {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &*self.issuer)?;
        let files = TlsFiles {
            ca_file: dir.join(format!("{}-ca.pem", self.name)),
            cert_file: dir.join(format!("{}-{name}.pem", self.name)),
            key_file: dir.join(format!("{}-{name}-key.pem", self.name)),
            ca_pem: self.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(&files.ca_file, &files.ca_pem)?;
        std::fs::write(&files.cert_file, &files.cert_pem)?;
        std::fs::write(&files.key_file, &files.key_pem)?;
        Ok(files)
    }
}

impl TlsFiles {
    /// A `tls { cert_file, key_file, ca_file }` block with these files (`verify` off).
    pub fn config(&self) -> TlsConfig {
        TlsConfig {
            ca_file: Some(self.ca_file.clone()),
            ..TlsConfig::new(&self.cert_file, &self.key_file)
        }
    }
}
