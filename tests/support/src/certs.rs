//! Certificates for TLS tests, made fresh in a temporary folder: a CA, a
//! server certificate for `localhost` and `127.0.0.1`, a client certificate,
//! and the odd ones (another CA's, an expired one) the refusals need.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

/// One certificate and its key, written as PEM files.
#[derive(Debug, Clone)]
pub struct Pem {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// A CA that signs certificates.
pub struct Ca {
    /// The CA's own certificate (what peers trust).
    pub pem: Pem,
    cert: rcgen::Certificate,
    key: KeyPair,
    dir: PathBuf,
}

fn write(dir: &Path, name: &str, cert: &str, key: &KeyPair) -> Pem {
    let pem = Pem {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&pem.cert, cert).expect("write certificate");
    std::fs::write(&pem.key, key.serialize_pem()).expect("write key");
    pem
}

impl Ca {
    /// A new self-signed CA, its files in `dir` as `<name>.pem`/`.key`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("polygear test CA {name}"));
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        let pem = write(dir, name, &cert.pem(), &key);
        Ca {
            pem,
            cert,
            key,
            dir: dir.to_path_buf(),
        }
    }

    fn sign(&self, name: &str, purpose: ExtendedKeyUsagePurpose, expired: bool) -> Pem {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![purpose];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("sign");
        write(&self.dir, name, &cert.pem(), &key)
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    pub fn server(&self, name: &str) -> Pem {
        self.sign(name, ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    /// A server certificate that expired in 2021.
    pub fn expired_server(&self, name: &str) -> Pem {
        self.sign(name, ExtendedKeyUsagePurpose::ServerAuth, true)
    }

    /// A client certificate.
    pub fn client(&self, name: &str) -> Pem {
        self.sign(name, ExtendedKeyUsagePurpose::ClientAuth, false)
    }
}
