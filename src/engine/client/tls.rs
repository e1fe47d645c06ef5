//! TLS settings: the webpki roots plus `--cacert` files, or `--insecure`'s verifier that accepts any
//! certificate (handshake signatures are still checked). Owns no connection.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{ClientConfig, ClientError};

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
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError(e.to_string()))?;
    if config.insecure {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth());
    }
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for path in &config.ca_files {
        for cert in load_ca_file(path)? {
            roots.add(cert).map_err(|e| {
                ClientError(format!(
                    "CA file '{}': unusable certificate: {e}",
                    path.display()
                ))
            })?;
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
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
