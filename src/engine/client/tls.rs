//! TLS settings: the webpki roots plus `--cacert` files, or `--insecure`'s verifier that accepts any
//! certificate (handshake signatures are still checked); a self-signed server certificate given in
//! `--cacert` is accepted as curl accepts it; `--pinnedpubkey` pins; `--cert`/`--key` client
//! certificates. Owns no connection.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use super::{ClientConfig, ClientError};

/// The handshake-signature methods of a verifier that wraps another in `$field`: only the
/// certificate check differs.
macro_rules! delegate_signatures {
    ($field:ident) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.$field.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.$field.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.$field.supported_verify_schemes()
        }
    };
}

/// The PEM certificates in `path`; an unreadable file or one without a certificate is an error
/// that names the file.
pub(super) fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let name = path.display();
    let pem = std::fs::read(path)
        .map_err(|e| ClientError(format!("cannot read CA file '{name}': {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientError(format!("CA file '{name}' is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(ClientError(format!(
            "CA file '{name}' holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )));
    }
    Ok(certs)
}

/// The rustls client configuration for `config` (ALPN is set later, by the connector builder).
pub(super) fn client_config(
    config: &ClientConfig,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(aes128_first((*provider).clone()));
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError(e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = if config.insecure {
        Arc::new(AcceptAnyCertificate(provider.clone()))
    } else {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let mut given = Vec::new();
        for path in &config.ca_files {
            for cert in load_ca_file(path)? {
                roots.add(cert.clone()).map_err(|e| {
                    ClientError(format!(
                        "CA file '{}': unusable certificate: {e}",
                        path.display()
                    ))
                })?;
                given.push(cert);
            }
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| ClientError(format!("TLS roots: {e}")))?;
        Arc::new(TrustGiven { webpki, given })
    };
    let verifier: Arc<dyn ServerCertVerifier> = if config.pinned_pubkeys.is_empty() {
        verifier
    } else {
        Arc::new(Pinned {
            inner: verifier,
            pins: config.pinned_pubkeys.clone(),
        })
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut tls = match &config.client_cert {
        None => builder.with_no_client_auth(),
        Some(cert) => {
            let (chain, key) = load_client_identity(cert, config.client_key.as_deref())?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ClientError(format!("--cert '{}': {e}", cert.display())))?
        }
    };
    // Session tickets for as many hosts as idle connections are kept for (rustls keeps 256 by
    // default): a list over thousands of hosts resumes TLS with each instead of a full handshake
    // whenever its connection was closed. A few hundred bytes each.
    tls.resumption =
        rustls::client::Resumption::in_memory_sessions(config.max_idle.clamp(256, 1 << 16));
    Ok(tls)
}

/// `provider` with each AES-128-GCM suite offered before its AES-256-GCM counterpart, as Chrome,
/// Firefox and Go order them (rustls offers AES-256 first); nothing is added or removed. Servers
/// mostly take the client's order, and the AES-256 suites' SHA-384 key schedule costs more per
/// handshake: ring runs SHA-512 with portable code on AMD CPUs (its AVX code is for Intel only),
/// while SHA-256 uses the CPU's SHA instructions where it has them (docs/performance.md, issue 17:
/// 4.8% of the CPU of a run with a handshake per request, 0.9% after).
fn aes128_first(mut provider: CryptoProvider) -> CryptoProvider {
    use rustls::CipherSuite as S;
    let suites = &mut provider.cipher_suites;
    for (aes256, aes128) in [
        (S::TLS13_AES_256_GCM_SHA384, S::TLS13_AES_128_GCM_SHA256),
        (
            S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ),
    ] {
        let at =
            |suites: &[rustls::SupportedCipherSuite], s| suites.iter().position(|x| x.suite() == s);
        if let (Some(big), Some(small)) = (at(suites, aes256), at(suites, aes128))
            && small > big
        {
            let suite = suites.remove(small);
            suites.insert(big, suite);
        }
    }
    provider
}

/// The rustls configuration for TLS to an `https://` proxy: the same trust as the targets'
/// (`--cacert`, `--insecure`) plus the proxy's own (`--proxy-cacert`, `--proxy-insecure`); no
/// `--pinnedpubkey` (a pin is for the target) and no client certificate (it is the target's).
pub(super) fn proxy_config(
    config: &ClientConfig,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ClientConfig, ClientError> {
    let mut ca_files = config.ca_files.clone();
    ca_files.extend(config.proxy.ca_files.iter().cloned());
    let for_proxy = ClientConfig {
        insecure: config.insecure || config.proxy.insecure,
        ca_files,
        pinned_pubkeys: Vec::new(),
        client_cert: None,
        client_key: None,
        ..config.clone()
    };
    client_config(&for_proxy, provider)
}

/// `--cert FILE` (PEM chain, maybe with its key) and `--key FILE` (PEM private key).
fn load_client_identity(
    cert: &Path,
    key: Option<&Path>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ClientError> {
    let read = |p: &Path, flag: &str| {
        std::fs::read(p)
            .map_err(|e| ClientError(format!("{flag}: cannot read '{}': {e}", p.display())))
    };
    let pem = read(cert, "--cert")?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientError(format!("--cert '{}' is not valid PEM: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(ClientError(format!(
            "--cert '{}' holds no PEM certificate",
            cert.display()
        )));
    }
    let (key_pem, key_name) = match key {
        Some(k) => (read(k, "--key")?, k),
        None => (pem, cert),
    };
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        ClientError(format!(
            "{} '{}' holds no usable private key: {e}",
            if key.is_some() {
                "--key"
            } else {
                "--cert (without --key)"
            },
            key_name.display()
        ))
    })?;
    Ok((chain, key))
}

/// Parses `--pinnedpubkey`: `sha256//BASE64[;sha256//BASE64...]` as curl writes it, or a PEM file
/// holding a public key (`-----BEGIN PUBLIC KEY-----`). The SHA-256 digests of the pinned keys.
pub fn parse_pinned_pubkey(arg: &str) -> Result<Vec<[u8; 32]>, String> {
    use base64::Engine;
    if arg.starts_with("sha256//") {
        return arg
            .split(';')
            .map(|pin| {
                let b64 = pin
                    .trim()
                    .strip_prefix("sha256//")
                    .ok_or_else(|| format!("'{pin}' must look like sha256//BASE64"))?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| format!("'{pin}': not base64: {e}"))?;
                <[u8; 32]>::try_from(bytes.as_slice())
                    .map_err(|_| format!("'{pin}': a SHA-256 digest is 32 bytes"))
            })
            .collect();
    }
    let pem = std::fs::read(arg).map_err(|e| format!("cannot read '{arg}': {e}"))?;
    let spki = rustls::pki_types::SubjectPublicKeyInfoDer::from_pem_slice(&pem)
        .map_err(|e| format!("'{arg}' holds no PEM public key: {e}"))?;
    Ok(vec![Sha256::digest(spki.as_ref()).into()])
}

/// The webpki verifier, and one exception curl users rely on: a server certificate identical to
/// one given in `--cacert` is trusted even when it is marked as a CA (as `openssl req -x509`
/// makes it), which webpki refuses (`CaUsedAsEndEntity`). Its name and validity period are still
/// checked, and the handshake signatures are still verified.
#[derive(Debug)]
struct TrustGiven {
    webpki: Arc<WebPkiServerVerifier>,
    given: Vec<CertificateDer<'static>>,
}

impl TrustGiven {
    fn accept_given(
        &self,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let bad = |e: rustls::CertificateError| rustls::Error::InvalidCertificate(e);
        let ee = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| bad(rustls::CertificateError::BadEncoding))?;
        ee.verify_is_valid_for_subject_name(server_name)
            .map_err(|_| bad(rustls::CertificateError::NotValidForName))?;
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity.as_ref())
            .map_err(|_| bad(rustls::CertificateError::BadEncoding))?;
        let validity = cert.validity();
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if now < validity.not_before.timestamp() {
            return Err(bad(rustls::CertificateError::NotValidYet));
        }
        if now > validity.not_after.timestamp() {
            return Err(bad(rustls::CertificateError::Expired));
        }
        Ok(())
    }
}

impl ServerCertVerifier for TrustGiven {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => Ok(v),
            Err(e) if self.given.iter().any(|g| g.as_ref() == end_entity.as_ref()) => {
                // Names and dates say more than webpki's refusal of a CA as an end entity.
                self.accept_given(end_entity, server_name, now)
                    .map(|()| ServerCertVerified::assertion())
                    .map_err(|mine| match mine {
                        rustls::Error::InvalidCertificate(
                            rustls::CertificateError::BadEncoding,
                        ) => e,
                        mine => mine,
                    })
            }
            Err(e) => Err(e),
        }
    }

    delegate_signatures!(webpki);
}

/// `--pinnedpubkey`: after the inner verifier (webpki, or `--insecure`'s), the server's public
/// key must be one of the pinned ones, as curl checks it even with `-k`.
#[derive(Debug)]
struct Pinned {
    inner: Arc<dyn ServerCertVerifier>,
    pins: Vec<[u8; 32]>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let ee = webpki::EndEntityCert::try_from(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        let digest: [u8; 32] = Sha256::digest(ee.subject_public_key_info().as_ref()).into();
        if self.pins.contains(&digest) {
            Ok(verified)
        } else {
            use base64::Engine;
            Err(rustls::Error::General(format!(
                "the server's public key (sha256//{}) matches no --pinnedpubkey",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )))
        }
    }

    delegate_signatures!(inner);
}

/// `builder` with [`AcceptAnyCertificate`] as its verifier, and no client certificate.
pub(super) fn insecure(
    builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>,
    provider: Arc<CryptoProvider>,
) -> rustls::ClientConfig {
    builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth()
}

/// `--insecure`: any certificate chain and name is accepted. The handshake's signatures are still
/// verified, so the peer must hold the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_128_is_offered_before_aes_256_and_nothing_else_changes() {
        use rustls::CipherSuite as S;
        let before = rustls::crypto::ring::default_provider();
        let after = aes128_first(before.clone());
        let names = |p: &CryptoProvider| {
            p.cipher_suites
                .iter()
                .map(|s| s.suite())
                .collect::<Vec<_>>()
        };
        let (mut b, mut a) = (names(&before), names(&after));
        let pos = |v: &[S], s| v.iter().position(|x| *x == s).unwrap();
        assert_eq!(a[0], S::TLS13_AES_128_GCM_SHA256, "{a:?}");
        assert!(pos(&a, S::TLS13_AES_256_GCM_SHA384) < pos(&a, S::TLS13_CHACHA20_POLY1305_SHA256));
        for (small, big) in [
            (
                S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            ),
            (
                S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            ),
        ] {
            assert!(pos(&a, small) < pos(&a, big), "{a:?}");
        }
        b.sort_by_key(|s| u16::from(*s));
        a.sort_by_key(|s| u16::from(*s));
        assert_eq!(a, b, "the same suites, reordered");
    }
}
